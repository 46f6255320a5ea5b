#include "adoption.h"

namespace deployctl {

namespace {

AdoptionPlan refuse(std::string why) {
  AdoptionPlan plan;
  plan.refusal = std::move(why);
  return plan;
}

}  // namespace

std::string unsettled_reason(const DeploymentState& recorded) {
  if (recorded.phase != Phase::running) {
    return std::string("its supervisor died while the deployment was ") +
           phase_name(recorded.phase);
  }
  for (const auto& [name, service] : recorded.services) {
    if (service.removed) return "service " + name + " was being removed by a reload";
    if (service.rollout && service.rollout->status == RolloutState::Status::running) {
      return "a rolling restart of " + name + " was under way";
    }
    for (const auto& [index, replica] : service.replicas) {
      switch (replica.machine.state) {
        case ReplicaState::ready:
        case ReplicaState::backoff:
        case ReplicaState::crash_loop:
        case ReplicaState::stopped:
        case ReplicaState::failed:
          break;
        default:
          return replica.id + " was " + state_name(replica.machine.state);
      }
    }
  }
  return "";
}

AdoptionPlan plan_adoption(const DeploymentState& recorded, bool same_spec,
                           const std::set<std::uint64_t>& alive) {
  if (!same_spec) return refuse("the spec differs from the one its supervisor ran");
  if (auto why = unsettled_reason(recorded); !why.empty()) return refuse(std::move(why));
  AdoptionPlan plan;
  for (const auto& [name, service] : recorded.services) {
    for (const auto& [index, replica] : service.replicas) {
      const bool is_alive = alive.count(replica.serial) > 0;
      switch (replica.machine.state) {
        case ReplicaState::ready:
          (is_alive ? plan.adopted : plan.vanished).push_back(replica.serial);
          break;
        case ReplicaState::backoff:
        case ReplicaState::crash_loop:
          plan.rearm.push_back(replica.serial);
          [[fallthrough]];
        default:  // stopped, failed (unsettled_reason let nothing else through)
          if (is_alive) return refuse(replica.id + " runs but was recorded without a process");
          break;
      }
    }
  }
  plan.adopt = true;
  plan.state = recorded;
  plan.state.waiters.clear();
  return plan;
}

}  // namespace deployctl
