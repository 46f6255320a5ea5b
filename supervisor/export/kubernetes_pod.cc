#include "kubernetes_pod.h"

#include <algorithm>
#include <charconv>

#include "bind_flags.h"

namespace deployctl::exporter {
namespace {

using yaml::Node;

// Pods have no replica index and each has its own network namespace: {replica} becomes 0 and
// {port} the base port.
std::string expand(const std::string& text, const ServiceSpec& service) {
  return expand_placeholders(text, 0, service.port);
}

bool uses_replica(const std::string& text) {
  return expand_placeholders(text, 0, std::nullopt) != expand_placeholders(text, 1, std::nullopt);
}

void warn_replica(const std::string& key, Warnings& warnings) {
  warnings.add(key,
               "{replica} has no equivalent in a Deployment (pods have no index): "
               "written as 0 in every pod");
}

std::vector<std::string> expand_all(const std::vector<std::string>& argv,
                                    const ServiceSpec& service, const std::string& key,
                                    Warnings& warnings) {
  std::vector<std::string> out;
  for (const auto& arg : argv) out.push_back(expand(arg, service));
  if (std::any_of(argv.begin(), argv.end(), uses_replica)) warn_replica(key, warnings);
  return out;
}

EnvList merged_env(const ExportInput& input, const ServiceSpec& service, Warnings& warnings) {
  EnvList env;
  auto put = [&env](const std::string& key, const std::string& value) {
    auto same = [&key](const auto& entry) { return entry.first == key; };
    auto it = std::find_if(env.begin(), env.end(), same);
    if (it != env.end())
      it->second = value;
    else
      env.emplace_back(key, value);
  };
  if (!service.env_file.empty()) {
    auto it = input.env_files.find(service.env_file);
    if (it == input.env_files.end()) {
      warnings.add(service_key(service.name, "env_file"),
                   "cannot read " + service.env_file + ": its variables are not exported");
    } else {
      for (const auto& [key, value] : it->second) put(key, value);
    }
  }
  for (const auto& [key, value] : service.env) {
    if (uses_replica(value)) warn_replica(service_key(service.name, "env." + key), warnings);
    put(key, expand(value, service));
  }
  return env;
}

std::vector<std::uint16_t> ports_of(const ServiceSpec& service) {
  std::vector<std::uint16_t> ports;
  for (const auto& address : service.listen) ports.push_back(address.port);
  if (service.port) ports.push_back(*service.port);
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

// The probe action; nullopt for kind none, or control without a port to fall back on.
std::optional<Node> probe_action(const ServiceSpec& service, Warnings& warnings) {
  const std::string key = service_key(service.name, "health.kind");
  std::optional<std::uint16_t> port = service.port;
  if (!port && !service.listen.empty()) port = service.listen.front().port;
  switch (service.health.kind) {
    case HealthKind::none:
      return std::nullopt;
    case HealthKind::exec:
      return Node::map().set(
          "exec",
          Node::map().set("command", Node::strings(expand_all(
                                         service.health.command, service,
                                         service_key(service.name, "health.command"), warnings))));
    case HealthKind::http:
      return Node::map().set("httpGet", Node::map()
                                            .set("path", Node::str(service.health.path))
                                            .set("port", Node::integer(*port)));
    case HealthKind::tcp:
      return Node::map().set("tcpSocket", Node::map().set("port", Node::integer(*port)));
    case HealthKind::control:
      break;
  }
  if (!port) {
    warnings.add(key,
                 "the control protocol (ready/heartbeat over a supervisor-held fd) has "
                 "no Kubernetes equivalent and the service has no port to probe "
                 "instead: no probes are written");
    return std::nullopt;
  }
  warnings.add(key,
               "the control protocol (ready/heartbeat over a supervisor-held fd) has no "
               "Kubernetes equivalent: probed with tcpSocket on port " +
                   std::to_string(*port) + " instead");
  return Node::map().set("tcpSocket", Node::map().set("port", Node::integer(*port)));
}

void warn_rounded(const HealthSpec& health, const std::string& service, Warnings& warnings) {
  for (auto [name, value] :
       {std::pair{"interval", health.interval}, std::pair{"timeout", health.timeout}}) {
    // A default rounded up is no choice of the user's: only a written value is warned about.
    const std::string key = service_key(service, std::string("health.") + name);
    if (value.count() % 1000 != 0 && warnings.written(key)) {
      warnings.add(
          key,
          "Kubernetes counts probe times in whole seconds: " + std::to_string(value.count()) +
              "ms is written as " + std::to_string(ceil_seconds(value)) + "s");
    }
  }
}

// readinessProbe and livenessProbe share the action; startupProbe covers start_period.
void add_probes(const ServiceSpec& service, Node& container, Warnings& warnings) {
  std::optional<Node> action = probe_action(service, warnings);
  if (!action) return;
  const HealthSpec& health = service.health;
  warn_rounded(health, service.name, warnings);
  const long long period = ceil_seconds(health.interval);
  auto probe = [&](long long failures) {
    Node node = *action;
    node.set("periodSeconds", Node::integer(period));
    node.set("timeoutSeconds", Node::integer(ceil_seconds(health.timeout)));
    node.set("failureThreshold", Node::integer(failures));
    return node;
  };
  const long long start_failures =
      std::max<long long>(1, (health.start_period.count() + period * 1000 - 1) / (period * 1000));
  container.set("startupProbe", probe(start_failures));
  container.set("readinessProbe", probe(health.failures));
  container.set("livenessProbe", probe(health.failures));
}

std::optional<std::int64_t> numeric_id(const std::string& text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Node security_context(const ServiceSpec& service, Warnings& warnings) {
  Node context = Node::map();
  for (auto [key, value, field] : {std::tuple{"user", &service.user, "runAsUser"},
                                   std::tuple{"group", &service.group, "runAsGroup"}}) {
    if (value->empty()) continue;
    if (auto id = numeric_id(*value)) {
      context.set(field, Node::integer(*id));
    } else {
      warnings.add(service_key(service.name, key),
                   std::string("securityContext.") + field + " takes a numeric id; \"" + *value +
                       "\" is not written (use the id it has in the image)");
    }
  }
  return context;
}

Node resources(const ServiceSpec& service, Warnings& warnings) {
  Node limits = Node::map();
  if (service.memory.max) limits.set("memory", Node::str(std::to_string(*service.memory.max)));
  if (service.memory.restart_above) {
    warnings.add(service_key(service.name, "memory.restart_above"),
                 "Kubernetes has no restart at a soft memory threshold (requests.memory only "
                 "reserves memory for scheduling): not exported");
  }
  return limits.empty() ? Node::map() : Node::map().set("limits", std::move(limits));
}

void warn_restart(const ServiceSpec& service, Warnings& warnings) {
  if (service.restart.policy != RestartPolicy::always) {
    warnings.add(service_key(service.name, "restart.policy"),
                 "a Deployment always restarts its containers (restartPolicy: Always); the "
                 "policy is not exported");
  }
  for (const char* key : {"restart.backoff", "restart.crash_loop"}) {
    if (warnings.written(service_key(service.name, key))) {
      warnings.add(service_key(service.name, key),
                   "Kubernetes uses its own restart back-off (10s doubling to 5m): not "
                   "exported");
    }
  }
}

Node main_container(const ServiceSpec& service, const PodParts& pod, const std::string& image,
                    Warnings& warnings) {
  const std::string command_key = service_key(service.name, "command");
  std::vector<std::uint16_t> listen_ports;
  for (const auto& address : service.listen) listen_ports.push_back(address.port);
  // Loopback in a pod would be unreachable from the Service: the pod's own namespace is the
  // boundary, so the rewritten bind flags use the wildcard address.
  BindRewrite rewrite = bind_by_itself(expand_all(service.command, service, command_key, warnings),
                                       listen_ports, "0.0.0.0");
  if (!rewrite.problem.empty()) warnings.add(command_key, rewrite.problem);
  Node container = Node::map();
  container.set("name", Node::str(dns_label(service.name)));
  container.set("image", Node::str(image));
  container.set("command", Node::strings(rewrite.command));
  container.set("workingDir", Node::str(service.working_dir));
  container.set("env", Node::list().add(Node::map()
                                            .set("name", Node::str("DEPLOYCTL_SERVICE"))
                                            .set("value", Node::str(service.name))));
  if (!pod.env.empty()) {
    container.set("envFrom",
                  Node::list().add(Node::map().set(
                      "configMapRef", Node::map().set("name", Node::str(pod.config_map)))));
  }
  Node ports = Node::list();
  for (std::uint16_t port : pod.ports) {
    ports.add(
        Node::map().set("containerPort", Node::integer(port)).set("protocol", Node::str("TCP")));
  }
  if (!ports.empty()) container.set("ports", std::move(ports));
  Node limits = resources(service, warnings);
  if (!limits.empty()) container.set("resources", std::move(limits));
  add_probes(service, container, warnings);
  return container;
}

// deployctl runs the steps once per deploy, before any replica; initContainers run them in
// the same order before the app container, but once per pod (docs/export.md).
Node init_containers(const Spec& spec, const std::string& image) {
  Node list = Node::list();
  for (std::size_t i = 0; i < spec.pre_start.size(); ++i) {
    const PreStartStep& step = spec.pre_start[i];
    Node container = Node::map();
    container.set("name", Node::str("pre-start-" + std::to_string(i + 1)));
    container.set("image", Node::str(image));
    container.set("command", Node::strings(step.command));
    container.set("workingDir", Node::str(step.working_dir));
    Node env = Node::list();
    for (const auto& [name, value] : step.env) {
      env.add(Node::map().set("name", Node::str(name)).set("value", Node::str(value)));
    }
    if (!env.empty()) container.set("env", std::move(env));
    list.add(std::move(container));
  }
  return list;
}

}  // namespace

void warn_pre_start(const Spec& spec, Warnings& warnings) {
  for (std::size_t i = 0; i < spec.pre_start.size(); ++i) {
    const std::string key = "pre_start[" + std::to_string(i) + "]";
    warnings.add(key,
                 "runs as an initContainer of every service's pods: once per pod (every "
                 "replica, every pod restart, concurrently across pods), not once per "
                 "deploy; the step must be idempotent");
    if (warnings.written(key + ".timeout")) {
      warnings.add(key + ".timeout", "initContainers have no timeout of their own: not exported");
    }
  }
}

PodParts render_pod(const ExportInput& input, const ServiceSpec& service, const std::string& image,
                    Warnings& warnings) {
  PodParts pod;
  pod.name = dns_label(input.spec.name + "-" + service.name);
  pod.config_map = pod.name + "-env";
  pod.env = merged_env(input, service, warnings);
  pod.ports = ports_of(service);
  if (service.replicas_auto) {
    warnings.add(service_key(service.name, "replicas"),
                 "\"auto\" is this machine's CPU count (" + std::to_string(service.replicas) +
                     "); pods spread over nodes, so that number is written: set a number or "
                     "add a HorizontalPodAutoscaler");
  }
  warn_restart(service, warnings);
  if (service.stop.signal != SIGTERM) {
    warnings.add(service_key(service.name, "stop.signal"),
                 "Kubernetes stops containers with SIGTERM; " + signal_name(service.stop.signal) +
                     " cannot be chosen per pod (make the program stop on SIGTERM, or use "
                     "STOPSIGNAL in the image)");
  }
  Node& spec = pod.spec;
  spec.set("terminationGracePeriodSeconds", Node::integer(ceil_seconds(service.stop.timeout)));
  Node context = security_context(service, warnings);
  if (!context.empty()) spec.set("securityContext", std::move(context));
  Node init = init_containers(input.spec, image);
  if (!init.empty()) spec.set("initContainers", std::move(init));
  spec.set("containers", Node::list().add(main_container(service, pod, image, warnings)));
  return pod;
}

}  // namespace deployctl::exporter
