// `deployctl export`: the same deploy.toml rendered for another orchestrator (docs/export.md).
// Pure: a loaded Spec, the positions of its keys and the contents of its env files in; the
// rendered files and the warnings out. No I/O (export_command.h does the reading and writing).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "load.h"
#include "spec.h"

namespace deployctl::exporter {

struct RenderedFile {
  std::string name;  // a bare file name, e.g. "shop-web.yaml" or "shop-web@.service"
  std::string text;
};

// A file's contents, or the warnings saying what could not be expressed, each at the
// file:line:col of its key. Rendering goes on after a warning; errors stop it.
struct ExportResult {
  std::vector<RenderedFile> files;
  std::vector<SpecError> warnings;
  std::vector<SpecError> errors;  // e.g. no image given; files is empty when set
};

// The inputs every exporter shares. env_files maps an env_file path of the spec to its parsed
// contents (the CLI reads them; a missing entry is reported as a warning).
struct ExportInput {
  const Spec& spec;
  const SourceMap& positions;
  const std::map<std::string, EnvList>& env_files;
};

struct KubernetesOptions {
  std::string image;       // overrides [export.kubernetes] image
  std::string name_space;  // metadata.namespace; empty: none written
};

// Per service: ConfigMap (env), Deployment (with the pre_start steps as initContainers) and
// Service (when it listens), in one multi-document YAML file "NAME-SERVICE.yaml".
ExportResult export_kubernetes(const ExportInput& input, const KubernetesOptions& options);

struct SystemdOptions {
  int systemd_version = 252;  // of the systemd that will run the units: gates RestartSteps=
};

// NAME.target, NAME-SERVICE@.service (+ per-instance drop-ins when {port} is used),
// NAME-SERVICE.socket, NAME-pre-start-STEP.service.
ExportResult export_systemd(const ExportInput& input, const SystemdOptions& options);

}  // namespace deployctl::exporter
