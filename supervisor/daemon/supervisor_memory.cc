// Memory limits on the supervisor's loop: per-replica cgroups (or sampling), the kill for
// `max` in the sampling mode, the surge replacement for `restart_above`, OOM attribution.
#include <signal.h>

#include <spdlog/spdlog.h>
#include <thread>

#include "memory_sampling.h"
#include "supervisor_state.h"

namespace deployctl {

namespace {

constexpr Duration kSamplingInterval{100};  // sampling mode: `max` is enforced at this period
constexpr Duration kCgroupInterval{250};    // cgroup modes: only restart_above and status

std::string mib(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1fMiB", static_cast<double>(bytes) / (1024 * 1024));
  return text;
}

}  // namespace

void Supervisor::start_memory() {
  memory_setup_ = detect_memory_mode(host_from_environment());
  bool limited = false;
  for (const auto& service : spec_.services) limited = limited || memory_limits(service).any();
  if (limited && memory_setup_.mode == MemoryMode::cgroup2) prepare_memory_cgroup2();
  spdlog::info("memory limits: {} ({})", mode_name(memory_setup_.mode), memory_setup_.reason);
}

void Supervisor::prepare_memory_cgroup2() {
  if (memory_cgroup2_ready_) return;
  std::string error;
  if (prepare_cgroup2(memory_setup_.dir, &error)) {
    memory_cgroup2_ready_ = true;
    return;
  }
  spdlog::warn("memory limits: cannot use cgroup v2 ({}); sampling instead", error);
  memory_setup_ = {MemoryMode::sampling, "", error};
}

bool Supervisor::prepare_memory(const ReplicaPtr& replica, SpawnRequest& request,
                                std::string* error) {
  auto& memory = replica->memory;
  const MemoryLimits limits = memory_limits(*replica->spec);
  memory.killed = false;
  memory.cgroup.reset();
  if (!limits.any()) {
    memory.policy.reset();
    return true;
  }
  if (memory_setup_.mode == MemoryMode::cgroup2) prepare_memory_cgroup2();
  const MemoryMode mode = memory_setup_.mode;
  memory.policy.emplace(limits, MemoryPolicyOptions{.enforce_max = mode == MemoryMode::sampling});
  if (mode != MemoryMode::sampling) {
    memory.cgroup = ReplicaCgroup::create(mode, memory_setup_.dir,
                                          memory_cgroup_name(spec_.name, paths_.dir, replica->id), limits,
                                          error);
    if (!memory.cgroup) {
      *error += "; set DEPLOYCTL_MEMORY_MODE=sampling to enforce limits without cgroups";
      return false;
    }
    request.cgroup_procs = memory.cgroup->procs_file();
  }
  schedule_memory_sample();
  return true;
}

bool Supervisor::memory_exit(const ReplicaPtr& replica, const ExitStatus& status) {
  auto& memory = replica->memory;
  bool oom = memory.killed;
  // An adopted replica's status is unknown (not our child): the cgroup's count decides.
  const bool killed = status.signal == SIGKILL || status.unknown;
  if (memory.cgroup && killed && memory.cgroup->oom_kills() > 0) oom = true;
  if (oom) {
    const auto& max = replica->spec->memory.max;
    spdlog::warn("{} (pid {}) was killed for exceeding memory.max ({}, {})", replica->id,
                 replica->exited_pid, max ? mib(*max) : "a limit above it",
                 mode_name(memory_setup_.mode));
  }
  release_memory_cgroup(replica);
  return oom;
}

void Supervisor::release_memory_cgroup(const ReplicaPtr& replica) {
  auto& cgroup = replica->memory.cgroup;
  if (!cgroup) return;
  cgroup->kill_all();  // what escaped the process group (setsid) dies with the replica
  if (!cgroup->remove()) {
    cgroups_to_remove_.push_back(*cgroup);  // members still exiting: retried at each sample
    schedule_memory_sample();
  }
  cgroup.reset();
}

std::optional<std::uint64_t> Supervisor::memory_now(const Replica& replica) const {
  if (replica.pid <= 0) return std::nullopt;
  if (replica.memory.cgroup) return replica.memory.cgroup->usage();
  return tree_pss(replica.pid);
}

void Supervisor::schedule_memory_sample() {
  if (memory_timer_armed_ || finished()) return;
  memory_timer_armed_ = true;
  memory_timer_.expires_after(memory_setup_.mode == MemoryMode::sampling ? kSamplingInterval
                                                                         : kCgroupInterval);
  memory_timer_.async_wait([this](boost::system::error_code ec) {
    memory_timer_armed_ = false;
    if (!ec && !finished()) sample_memory();
  });
}

void Supervisor::sample_memory() {
  std::erase_if(cgroups_to_remove_, [](const ReplicaCgroup& cgroup) {
    cgroup.kill_all();
    return cgroup.remove();
  });
  bool watching = !cgroups_to_remove_.empty();
  const auto now = time_.now();
  for (auto& [serial, replica] : replicas_) {
    auto& memory = replica->memory;
    if (!memory.policy || replica->pid <= 0) continue;
    watching = true;
    const auto bytes = memory_now(*replica);
    if (!bytes) continue;
    const MemoryVerdict verdict = memory.policy->observe(*bytes, now);
    if (verdict == MemoryVerdict::kill && !memory.killed) {
      kill_for_memory(replica, *bytes);
    } else if (verdict == MemoryVerdict::recycle) {
      // The core decides whether to replace it: the same surge-then-drain as `restart`.
      Event high{.kind = Event::Kind::memory_high, .replica = serial};
      high.bytes = *bytes;
      enqueue({std::move(high)});
    }
  }
  if (watching) schedule_memory_sample();
}

void Supervisor::kill_for_memory(const ReplicaPtr& replica, std::uint64_t bytes) {
  spdlog::warn("{} (pid {}) uses {}, above memory.max {}: SIGKILL", replica->id, replica->pid,
               mib(bytes), mib(*replica->spec->memory.max));
  replica->memory.killed = true;
  for (pid_t pid : process_tree(replica->pid)) kill(pid, SIGKILL);
  signal_group(replica->pid, SIGKILL);
}

void Supervisor::log_recycle(const Action& action) {
  auto it = replicas_.find(action.replica);
  if (it == replicas_.end()) return;
  const Replica& replica = *it->second;
  if (action.kind == Action::Kind::recycle_gave_up) {
    spdlog::warn("{}: its replacement did not become ready; it keeps serving above "
                 "memory.restart_above until its next restart", replica.id);
    return;
  }
  spdlog::info("{} (pid {}) stayed above memory.restart_above {} ({} now); replacing it: "
               "a new replica first, then this one drains", replica.id, replica.pid,
               mib(*replica.spec->memory.restart_above), mib(action.bytes));
}

void Supervisor::finish_memory() {
  memory_timer_.cancel();
  const auto deadline = time_.now() + std::chrono::seconds(2);
  while (!cgroups_to_remove_.empty() && time_.now() < deadline) {
    std::erase_if(cgroups_to_remove_, [](const ReplicaCgroup& cgroup) {
      cgroup.kill_all();
      return cgroup.remove();
    });
    if (!cgroups_to_remove_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (const auto& cgroup : cgroups_to_remove_) {
    spdlog::warn("cgroup {} could not be removed", cgroup.path());
  }
  if (memory_cgroup2_ready_) release_cgroup2(memory_setup_.dir);
}

json::Value Supervisor::memory_json(const ReplicaRecord& record, const Replica* replica) const {
  const bool limited = replica && replica->memory.policy;
  json::Value entry;
  auto optional_bytes = [](const std::optional<std::uint64_t>& bytes) {
    return bytes ? json::Value(*bytes) : json::Value();
  };
  const MemorySpec limits = replica ? replica->spec->memory : MemorySpec{};
  entry["bytes"] = limited ? optional_bytes(memory_now(*replica)) : json::Value();
  entry["max"] = optional_bytes(limits.max);
  entry["restart_above"] = optional_bytes(limits.restart_above);
  entry["mode"] = limited ? json::Value(mode_name(memory_setup_.mode)) : json::Value();
  entry["restarts"] = record.memory_restarts;
  entry["recycling"] = record.recycle == Recycle::running;
  return entry;
}

}  // namespace deployctl
