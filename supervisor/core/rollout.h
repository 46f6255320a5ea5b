// Rolling replacement of one service's replicas within its [rollout] bounds. Pure: it is given
// the slots as they are now and returns the next moves; the supervisor calls it after every
// event until it says done or failed.
//
// Bounds (like a Kubernetes Deployment): at most `desired + max_surge` replicas not retiring,
// at least `desired - max_unavailable` ready. Old replicas in trouble (not ready) go first.
#pragma once

#include <vector>

#include "spec.h"

namespace deployctl {

struct RolloutSlot {
  int index;
  bool old;       // started before the rollout began: to be replaced
  bool ready;
  bool retiring;  // draining or stopping: on its way out
  bool failed;    // new, and exited or timed out before it ever became ready
};

struct RolloutStep {
  enum class Status { in_progress, done, failed };
  Status status = Status::in_progress;
  int start = 0;            // how many new replicas to start now
  std::vector<int> drain;   // old replicas to drain now
};

RolloutStep plan_rollout(const std::vector<RolloutSlot>& slots, int desired,
                         const RolloutSpec& bounds);

}  // namespace deployctl
