// What the supervisor keeps about one replica's memory (see supervisor_memory.cc).
#pragma once

#include <optional>

#include "cgroup.h"
#include "memory_policy.h"

namespace deployctl {

struct ReplicaMemory {
  std::optional<MemoryPolicy> policy;   // set while the replica's service has memory limits
  std::optional<ReplicaCgroup> cgroup;  // cgroup modes: the cgroup of the current run
  bool killed = false;                  // sampling mode: killed for `max` in the current run
  enum class Recycle { no, running, gave_up } recycle = Recycle::no;  // restart_above
  int restarts = 0;  // OOM kills of this slot, plus those of the replica it replaced
};

}  // namespace deployctl
