// Memory limits across an upgrade in place and a crash of the supervisor (docs/upgrade.md):
// what the exec carries of the memory side, and how the new binary, or a successor adopting
// the replicas of a crashed supervisor, takes up each replica's cgroup and sampling again.
#include <spdlog/spdlog.h>

#include "supervisor_state.h"

namespace deployctl {

json::Value Supervisor::memory_setup_json() const {
  json::Value setup;
  setup["mode"] = mode_name(memory_setup_.mode);
  setup["dir"] = memory_setup_.dir;
  setup["cgroup2_ready"] = memory_cgroup2_ready_;
  return setup;
}

// After the exec the process is where prepare_cgroup2 moved it (DIR/supervisor): detecting the
// mode again would find that leaf, so the carried setup is taken as it was.
void Supervisor::resume_memory(const json::Value* carried) {
  const auto mode =
      carried ? parse_mode(json::as_string(json::get(*carried, "mode"))) : std::nullopt;
  if (!mode) return start_memory();  // a state without it: detect as at a start
  memory_setup_ = {*mode, json::as_string(json::get(*carried, "dir")),
                   "carried across the upgrade in place"};
  memory_cgroup2_ready_ = json::as_bool(json::get(*carried, "cgroup2_ready"));
  spdlog::info("memory limits: {} ({})", mode_name(memory_setup_.mode), memory_setup_.reason);
}

json::Value Supervisor::replica_memory_json(const Replica& replica) const {
  const ReplicaMemory& memory = replica.memory;
  json::Value carried;
  carried["cgroup"] = memory.cgroup ? json::Value(memory.cgroup->path()) : json::Value();
  carried["oom_baseline"] = memory.cgroup ? memory.cgroup->oom_baseline() : 0;
  carried["killed"] = memory.killed;
  return carried;
}

void Supervisor::adopt_memory(const ReplicaPtr& replica, const json::Value* carried) {
  const MemoryLimits limits = memory_limits(*replica->spec);
  auto& memory = replica->memory;
  if (!limits.any()) return;
  const MemoryMode mode = memory_setup_.mode;
  std::string path = memory_setup_.dir + "/" + memory_cgroup_name(spec_.name, paths_.dir, replica->id);
  std::optional<std::uint64_t> baseline;  // after a crash: OOM kills count from now
  if (carried) {
    if (const auto* cgroup = json::find(*carried, "cgroup"); cgroup && cgroup->is_string()) {
      path = json::as_string(*cgroup);
    }
    baseline = static_cast<std::uint64_t>(json::as_int(json::get(*carried, "oom_baseline")));
    memory.killed = json::as_bool(json::get(*carried, "killed"));
  }
  if (mode != MemoryMode::sampling) {
    memory.cgroup = ReplicaCgroup::adopt(mode, path, baseline);
    if (!memory.cgroup) {
      spdlog::warn(
          "{} (pid {}): its memory cgroup {} is gone; memory.max is enforced by "
          "sampling until its next restart",
          replica->id, replica->pid, path);
    }
  }
  // The soft limit's window starts again: a recycle comes at most one window later.
  memory.policy.emplace(limits, MemoryPolicyOptions{.enforce_max = !memory.cgroup});
  schedule_memory_sample();
}

}  // namespace deployctl
