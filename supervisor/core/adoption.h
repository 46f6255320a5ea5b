// Adopting the replicas a crashed supervisor left running (docs/upgrade.md, "Crash of the
// supervisor"): which recorded replicas a new `up` of the same deployment takes over, and the
// deployment state it resumes from. Pure: the daemon finds out which processes are alive and
// which fds the keeper handed back, this decides, the daemon performs.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "deployment_state.h"

namespace deployctl {

struct AdoptionPlan {
  bool adopt = false;
  std::string refusal;    // why not (then the leftovers are stopped as before adoption existed)
  DeploymentState state;  // to resume from (when adopting)
  std::vector<std::uint64_t> adopted;   // serials whose live process is taken over
  std::vector<std::uint64_t> vanished;  // ready when recorded, gone now: reported as exited
                                        // with an unknown status, restarted by policy
  std::vector<std::uint64_t> rearm;     // in backoff/crash-loop: their timer is armed again
};

// `recorded`: the dead supervisor's last recorded core state. `same_spec`: the new `up` runs
// the services the dead one ran. `alive`: serials whose process still runs (pid and start time
// checked) and whose channels the keeper handed back.
// Adopts only a settled deployment: running, no rollout, no service being removed, every
// replica ready (alive or vanished), stopped, failed, or waiting to restart. Anything else (a
// replica starting or stopping, a rollout) is refused: the caller stops the leftovers and
// starts afresh. Management requests the dead supervisor had not answered are dropped (their
// clients are gone).
AdoptionPlan plan_adoption(const DeploymentState& recorded, bool same_spec,
                           const std::set<std::uint64_t>& alive);

// Why plan_adoption refuses `recorded` whatever processes are alive and whatever the spec ("":
// it is settled, the outcome depends on them). The running supervisor writes its record only
// when this changes or is "" (supervisor_crash.cc): between two unsettled records a crash ends
// in the same refusal, so the states in between (a scale's `ready` events) need not be written.
std::string unsettled_reason(const DeploymentState& recorded);

}  // namespace deployctl
