// Internal to export/: the pod of one service's Deployment (containers, probes, resources,
// initContainers), and what the Deployment's neighbours need from it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "export.h"
#include "warnings.h"
#include "yaml.h"

namespace deployctl::exporter {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct PodParts {
  std::string name;                     // of the Deployment and the Service: "SPEC-SERVICE"
  std::string config_map;               // "SPEC-SERVICE-env"
  EnvList env;                          // env_file, then env (env wins), placeholders expanded
  std::vector<std::uint16_t> ports;     // container ports: every listen port, then `port`
  yaml::Node spec = yaml::Node::map();  // the pod template's spec
};

// Warnings about the [[pre_start]] steps, which every pod runs as initContainers.
void warn_pre_start(const Spec& spec, Warnings& warnings);

PodParts render_pod(const ExportInput& input, const ServiceSpec& service, const std::string& image,
                    Warnings& warnings);

}  // namespace deployctl::exporter
