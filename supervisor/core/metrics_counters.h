// Cumulative counters for the metrics (docs/metrics.md) that the deployment core decides:
// restarts by reason, OOM kills, rollouts by result and their durations. Pure: the daemon
// passes every event's actions and the state after it, with the event's time. Rollouts are
// counted from the core's rollout_started/rollout_ended actions, so one that begins and ends
// within a single event counts too.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "deployment.h"

namespace deployctl {

// Reasons a replica is restarted, as the metric's `reason` label spells them: reason_name()
// of the exit, or memory-recycle.
inline constexpr const char* kRestartReasons[] = {
    "exit", "signal", "oom", "health", "start-timeout", "protocol", "exec", "memory-recycle"};

struct ServiceCounters {
  std::map<std::string, std::uint64_t> restarts;  // by reason (kRestartReasons)
  std::uint64_t oom_kills = 0;
  std::map<std::string, std::uint64_t> rollouts;  // "done" | "failed"
  std::vector<double> rollout_seconds;       // durations of finished rollouts, newest last (capped)
  std::optional<TimePoint> rollout_started;  // of the rollout under way
};

class DeploymentCounters {
 public:
  static constexpr std::size_t kMaxDurations = 1024;

  // Counts what `actions` (of one event handled at `now`) did; `core` is the state after it.
  void observe(const std::vector<Action>& actions, const Deployment& core, TimePoint now);
  const std::map<std::string, ServiceCounters>& services() const { return services_; }

 private:
  void observe_transition(const Action& action, const std::string& service);
  void observe_rollout(const Action& action, TimePoint now);

  std::map<std::string, ServiceCounters> services_;
};

}  // namespace deployctl
