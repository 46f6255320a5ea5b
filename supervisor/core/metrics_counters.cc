#include "metrics_counters.h"

namespace deployctl {

using Act = ReplicaAction::Kind;

// A transition is a restart when the machine recorded an exit and then spawns again or waits
// for its backoff (not when the replica retires, fails the start or stays stopped/failed).
void DeploymentCounters::observe_transition(const Action& action, const std::string& service) {
  const ReplicaAction* exit = nullptr;
  bool again = false;
  for (const auto& step : action.steps) {
    if (step.kind == Act::record_exit) exit = &step;
    if (step.kind == Act::spawn || step.kind == Act::arm_timer) again = true;
  }
  if (!exit) return;
  ServiceCounters& counters = services_[service];
  if (action.event.out_of_memory) ++counters.oom_kills;
  const bool restarting = action.after == ReplicaState::starting ||
                          action.after == ReplicaState::backoff ||
                          action.after == ReplicaState::crash_loop;
  if (again && restarting) ++counters.restarts[reason_name(exit->reason)];
}

void DeploymentCounters::observe_rollout(const Action& action, TimePoint now) {
  ServiceCounters& counters = services_[action.service];
  if (action.kind == Action::Kind::rollout_started) {
    counters.rollout_started = now;
    return;
  }
  ++counters.rollouts[action.ok ? "done" : "failed"];
  auto& durations = counters.rollout_seconds;
  if (durations.size() == kMaxDurations) durations.erase(durations.begin());
  const TimePoint started = counters.rollout_started.value_or(now);
  durations.push_back(std::chrono::duration<double>(now - started).count());
  counters.rollout_started.reset();
}

void DeploymentCounters::observe(const std::vector<Action>& actions, const Deployment& core,
                                 TimePoint now) {
  for (const auto& action : actions) {
    if (action.kind == Action::Kind::transition) {
      if (const ServiceState* service = core.service_of(action.replica)) {
        observe_transition(action, service->settings.name);
      }
    } else if (action.kind == Action::Kind::recycle_started) {
      if (const ServiceState* service = core.service_of(action.replica)) {
        ++services_[service->settings.name].restarts["memory-recycle"];
      }
    } else if (action.kind == Action::Kind::rollout_started ||
               action.kind == Action::Kind::rollout_ended) {
      observe_rollout(action, now);
    }
  }
}

}  // namespace deployctl
