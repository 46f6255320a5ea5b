// What the daemon keeps about one replica's memory (see supervisor_memory.cc); the recycle
// decision and the OOM count are the core's (deployment_state.h).
#pragma once

#include <optional>
#include <string>

#include "cgroup.h"
#include "memory_policy.h"
#include "spec.h"
#include "tree_cgroup.h"

namespace deployctl {

struct ReplicaMemory {
  std::optional<MemoryPolicy> policy;   // set while the replica's service has memory limits
  std::optional<ReplicaCgroup> cgroup;  // cgroup modes: the cgroup of the current run
  bool killed = false;                  // sampling mode: killed for `max` in the current run
};

inline MemoryLimits memory_limits(const ServiceSpec& spec) {
  return {spec.memory.max, spec.memory.restart_above};
}

// The name of a replica's memory cgroup below the supervisor's: the same for every run, so a
// successor finds it after a crash, and distinct for deployments of one name under different
// state dirs (as the replica trees' cgroups: deployment_cgroup_name).
inline std::string memory_cgroup_name(const std::string& deployment, const std::string& state_dir,
                                      const std::string& replica) {
  return deployment_cgroup_name(deployment, state_dir) + "." + replica;
}

}  // namespace deployctl
