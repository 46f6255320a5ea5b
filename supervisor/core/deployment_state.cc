#include "deployment_state.h"

namespace deployctl {

ServiceSettings ServiceSettings::from(const ServiceSpec& spec) {
  ServiceSettings settings;
  settings.name = spec.name;
  settings.spec_replicas = spec.replicas;
  settings.rollout = spec.rollout;
  settings.policy = ReplicaPolicy::from(spec);
  settings.ready_when_running = spec.health.kind == HealthKind::none;
  settings.exec_probe = spec.health.kind == HealthKind::exec;
  for (const auto& address : spec.listen) settings.listen.push_back(address.text);
  return settings;
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::starting:
      return "starting";
    case Phase::running:
      return "running";
    case Phase::stopping:
      return "stopping";
    case Phase::finished:
      return "finished";
  }
  return "?";
}

int ready_count(const ServiceState& service) {
  int ready = 0;
  for (const auto& [index, replica] : service.replicas) {
    if (replica.machine.state == ReplicaState::ready) ++ready;
  }
  return ready;
}

std::vector<const ServiceState*> in_file_order(const DeploymentState& state) {
  std::vector<const ServiceState*> ordered;
  for (const auto& name : state.order) {
    if (auto it = state.services.find(name); it != state.services.end()) {
      ordered.push_back(&it->second);
    }
  }
  return ordered;
}

DeploymentState initial_state(const Spec& spec, const std::map<std::string, int>& saved) {
  DeploymentState state;
  state.name = spec.name;
  for (const auto& service_spec : spec.services) {
    ServiceState service;
    service.settings = ServiceSettings::from(service_spec);
    auto it = saved.find(service_spec.name);
    service.desired = it != saved.end() ? it->second : service_spec.replicas;
    state.services[service_spec.name] = std::move(service);
    state.order.push_back(service_spec.name);
  }
  return state;
}

}  // namespace deployctl
