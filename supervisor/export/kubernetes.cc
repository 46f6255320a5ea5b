// export_kubernetes: per service a ConfigMap, a Deployment and a Service (docs/export.md has
// the table of every spec key and what it becomes).
#include <algorithm>

#include "bind_flags.h"
#include "export.h"
#include "kubernetes_pod.h"
#include "warnings.h"
#include "yaml.h"

namespace deployctl::exporter {
namespace {

using yaml::Node;

Node metadata(const std::string& name, const Labels& labels, const KubernetesOptions& options) {
  Node meta = Node::map();
  meta.set("name", Node::str(name));
  if (!options.name_space.empty()) meta.set("namespace", Node::str(options.name_space));
  Node label_map = Node::map();
  for (const auto& [key, value] : labels) label_map.set(key, Node::str(value));
  meta.set("labels", std::move(label_map));
  return meta;
}

Node object(std::string api, std::string kind, Node meta) {
  Node node = Node::map();
  node.set("apiVersion", Node::str(std::move(api)));
  node.set("kind", Node::str(std::move(kind)));
  node.set("metadata", std::move(meta));
  return node;
}

// Labels "app.kubernetes.io/name" and "/instance" select the pods; "/managed-by" is
// informational.
Labels labels_of(const Spec& spec, const ServiceSpec& service, bool selector) {
  Labels labels = {{"app.kubernetes.io/name", dns_label(service.name)},
                   {"app.kubernetes.io/instance", dns_label(spec.name)}};
  if (!selector) labels.emplace_back("app.kubernetes.io/managed-by", "deployctl");
  return labels;
}

Node config_map(const std::string& name, const EnvList& env, const Labels& labels,
                const KubernetesOptions& options) {
  Node data = Node::map();
  for (const auto& [key, value] : env) data.set(key, Node::str(value));
  Node node = object("v1", "ConfigMap", metadata(name, labels, options));
  node.set("data", std::move(data));
  return node;
}

Node deployment(const PodParts& pod, const ServiceSpec& service, const Labels& labels,
                const Labels& selector, const KubernetesOptions& options) {
  Node match = Node::map();
  for (const auto& [key, value] : selector) match.set(key, Node::str(value));
  Node rolling = Node::map();
  rolling.set("maxSurge", Node::integer(service.rollout.max_surge));
  rolling.set("maxUnavailable", Node::integer(service.rollout.max_unavailable));
  Node strategy = Node::map();
  strategy.set("type", Node::str("RollingUpdate")).set("rollingUpdate", std::move(rolling));
  Node template_meta = Node::map();
  Node template_labels = Node::map();
  for (const auto& [key, value] : labels) template_labels.set(key, Node::str(value));
  template_meta.set("labels", std::move(template_labels));
  Node pod_template = Node::map();
  pod_template.set("metadata", std::move(template_meta)).set("spec", pod.spec);
  Node spec = Node::map();
  spec.set("replicas", Node::integer(service.replicas));
  spec.set("selector", Node::map().set("matchLabels", std::move(match)));
  spec.set("strategy", std::move(strategy));
  spec.set("template", std::move(pod_template));
  Node node = object("apps/v1", "Deployment", metadata(pod.name, labels, options));
  node.set("spec", std::move(spec));
  return node;
}

Node service_object(const PodParts& pod, const Labels& labels, const Labels& selector,
                    const KubernetesOptions& options) {
  Node ports = Node::list();
  for (std::uint16_t port : pod.ports) {
    Node entry = Node::map();
    entry.set("name", Node::str("port-" + std::to_string(port)));
    entry.set("port", Node::integer(port));
    entry.set("targetPort", Node::integer(port));
    entry.set("protocol", Node::str("TCP"));
    ports.add(std::move(entry));
  }
  Node select = Node::map();
  for (const auto& [key, value] : selector) select.set(key, Node::str(value));
  Node spec = Node::map();
  spec.set("selector", std::move(select)).set("ports", std::move(ports));
  Node node = object("v1", "Service", metadata(pod.name, labels, options));
  node.set("spec", std::move(spec));
  return node;
}

void warn_spec_level(const Spec& spec, Warnings& warnings) {
  if (warnings.written("logs")) {
    warnings.add("logs",
                 "Kubernetes keeps container output itself (kubectl logs); [logs] "
                 "has no equivalent and is not exported");
  }
  if (dns_label(spec.name) != spec.name) {
    warnings.add("name", "object names must be lower-case DNS labels: \"" + spec.name +
                             "\" is written as \"" + dns_label(spec.name) + "\"");
  }
}

}  // namespace

ExportResult export_kubernetes(const ExportInput& input, const KubernetesOptions& options) {
  ExportResult result;
  KubernetesOptions effective = options;
  if (effective.image.empty()) effective.image = input.spec.export_settings.kubernetes_image;
  if (effective.image.empty()) {
    result.errors.push_back(SpecError{input.spec.path, 0, 0, "export.kubernetes.image",
                                      "no container image: pass --image IMAGE or set "
                                      "[export.kubernetes] image = \"...\" in the spec"});
    return result;
  }
  Warnings warnings(input.spec.path, input.positions);
  warn_spec_level(input.spec, warnings);
  warn_pre_start(input.spec, warnings);
  for (const auto& service : input.spec.services) {
    const PodParts pod = render_pod(input, service, effective.image, warnings);
    const Labels labels = labels_of(input.spec, service, false);
    const Labels selector = labels_of(input.spec, service, true);
    std::string text;
    if (!pod.env.empty()) {
      text += "---\n" + config_map(pod.config_map, pod.env, labels, effective).emit();
    }
    text += "---\n" + deployment(pod, service, labels, selector, effective).emit();
    if (!pod.ports.empty()) {
      text += "---\n" + service_object(pod, labels, selector, effective).emit();
    }
    result.files.push_back(RenderedFile{pod.name + ".yaml", std::move(text)});
  }
  result.warnings = warnings.take();
  return result;
}

}  // namespace deployctl::exporter
