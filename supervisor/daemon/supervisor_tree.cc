// Every replica's process tree in a cgroup of its own (tree_cgroup.h) on the supervisor's loop.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "supervisor_state.h"

namespace deployctl {

void Supervisor::start_tree_cgroups() {
  if (tree_cgroups_.enabled()) return;
  std::string why;
  const char* knob = std::getenv("DEPLOYCTL_REPLICA_CGROUPS");
  if (knob && std::strcmp(knob, "off") == 0) {
    why = "DEPLOYCTL_REPLICA_CGROUPS=off";
  } else if (auto parent = tree_cgroup_parent(host_from_environment(), &why)) {
    if (tree_cgroups_.open(*parent, deployment_cgroup_name(spec_.name, paths_.dir), &why)) {
      spdlog::info("replica trees: a cgroup per replica in {}", tree_cgroups_.dir());
      return;
    }
  }
  spdlog::info(
      "replica trees: process groups only ({}); a replica's descendants that leave "
      "its process group survive its restart until `down`",
      why);
}

// After an exec: the directory the previous binary used ("" : none; detected as at a start).
// Detecting it again could find another one: prepare_cgroup2 may have moved this process.
void Supervisor::resume_tree_cgroups(const std::string& carried_dir) {
  const auto slash = carried_dir.rfind('/');
  std::string why;
  if (slash != std::string::npos && slash > 0 &&
      tree_cgroups_.open(carried_dir.substr(0, slash), carried_dir.substr(slash + 1), &why)) {
    spdlog::info("replica trees: a cgroup per replica in {}", tree_cgroups_.dir());
    return;
  }
  start_tree_cgroups();
}

void Supervisor::prepare_tree_cgroup(const ReplicaPtr& replica, SpawnRequest& request) {
  replica->tree_cgroup.reset();
  const bool memory_holds_tree =
      replica->memory.cgroup && memory_setup_.mode == MemoryMode::cgroup2;
  if (!tree_cgroups_.enabled() || memory_holds_tree) return;
  const std::string path = tree_cgroups_.path_of(replica->id);
  // An earlier run's cgroup still waiting for removal is this run's now: no later retry of
  // that removal may kill the new run.
  std::erase_if(cgroups_to_remove_,
                [&path](const ReplicaCgroup& cgroup) { return cgroup.path() == path; });
  std::string error;
  replica->tree_cgroup = tree_cgroups_.prepare(replica->id, &error);
  if (!replica->tree_cgroup) {
    spdlog::warn("{}: {}; from now on replicas are tracked by process group only", replica->id,
                 error);
    tree_cgroups_.close();
    return;
  }
  request.tree_cgroup_procs = replica->tree_cgroup->procs_file();
}

void Supervisor::release_tree_cgroup(const ReplicaPtr& replica) {
  auto& cgroup = replica->tree_cgroup;
  if (!cgroup) return;
  cgroup->kill_all();  // descendants that left the process group (setsid, double fork)
  if (!cgroup->remove()) {
    cgroups_to_remove_.push_back(*cgroup);  // members still exiting: retried with the memory's
    schedule_memory_sample();
  }
  cgroup.reset();
}

void Supervisor::adopt_tree_cgroup(const ReplicaPtr& replica) {
  if (tree_cgroups_.enabled()) replica->tree_cgroup = tree_cgroups_.find(replica->id);
}

void Supervisor::finish_tree_cgroups() {
  tree_cgroups_.close();  // after finish_memory removed the replicas' cgroups
}

}  // namespace deployctl
