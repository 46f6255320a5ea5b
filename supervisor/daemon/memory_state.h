// What the daemon keeps about one replica's memory (see supervisor_memory.cc); the recycle
// decision and the OOM count are the core's (deployment_state.h).
#pragma once

#include <optional>

#include "cgroup.h"
#include "memory_policy.h"

namespace deployctl {

struct ReplicaMemory {
  std::optional<MemoryPolicy> policy;   // set while the replica's service has memory limits
  std::optional<ReplicaCgroup> cgroup;  // cgroup modes: the cgroup of the current run
  bool killed = false;                  // sampling mode: killed for `max` in the current run
};

}  // namespace deployctl
