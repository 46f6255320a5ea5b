// Per-replica memory cgroups (edge: real files under /sys/fs/cgroup, or a test tree).
//
// Mode detection, in order: cgroup v2 where the supervisor's own cgroup offers the memory
// controller and is writable (delegated); else the cgroup v1 memory controller where the
// supervisor's memory cgroup is writable; else `sampling` (no cgroup: the supervisor samples
// the replica's process tree and enforces `max` itself). Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "memory_policy.h"

namespace deployctl {

enum class MemoryMode { cgroup2, cgroup1, sampling };

const char* mode_name(MemoryMode mode);
std::optional<MemoryMode> parse_mode(const std::string& text);

// Where detection looks; every path can point into a fake tree for tests.
struct CgroupHost {
  std::string proc_self_cgroup;              // the text of /proc/self/cgroup
  std::string v2_mount = "/sys/fs/cgroup";   // or .../unified on a hybrid host
  std::string v1_memory_mount = "/sys/fs/cgroup/memory";
  std::optional<std::string> own_dir;        // the supervisor's cgroup dir, given (test tree)
  std::optional<MemoryMode> forced;          // DEPLOYCTL_MEMORY_MODE
};

// The host as this process sees it, with the test/debug knobs DEPLOYCTL_MEMORY_MODE
// (sampling|cgroup1|cgroup2) and DEPLOYCTL_CGROUP_ROOT (the supervisor's own cgroup dir).
CgroupHost host_from_environment();

struct MemorySetup {
  MemoryMode mode = MemoryMode::sampling;
  std::string dir;     // cgroup modes: the supervisor's cgroup; replica cgroups go below it
  std::string reason;  // why this mode, for the start-up log
};

// Reads, never writes.
MemorySetup detect_memory_mode(const CgroupHost& host);

// The path of this process's cgroup in /proc/self/cgroup text: the v2 line ("0::/path") when
// `controller` is empty, else the v1 line listing `controller`.
std::optional<std::string> own_cgroup_path(const std::string& proc_self_cgroup,
                                           const std::string& controller);

// cgroup v2's no-internal-processes rule: moves this process into `dir`/supervisor, then
// enables +memory for `dir`'s children. false with *error when either step fails.
bool prepare_cgroup2(const std::string& dir, std::string* error);
// Undoes prepare_cgroup2 when the supervisor stops (best effort): -memory, back into `dir`,
// and the `supervisor` leaf removed.
void release_cgroup2(const std::string& dir);

// One replica's cgroup for one run. Created with its limit; the replica joins it by writing
// "0" to procs_file() before exec (SpawnRequest::cgroup_procs).
class ReplicaCgroup {
 public:
  static std::optional<ReplicaCgroup> create(MemoryMode mode, const std::string& parent,
                                             const std::string& name, const MemoryLimits& limits,
                                             std::string* error);
  // The cgroup of a replica that already runs (after an exec or a crash of the supervisor), if
  // its directory exists. OOM kills count from `oom_baseline` (the count when its run began,
  // carried across an exec), else from now.
  static std::optional<ReplicaCgroup> adopt(MemoryMode mode, const std::string& path,
                                            std::optional<std::uint64_t> oom_baseline);

  const std::string& path() const { return path_; }
  std::string procs_file() const { return path_ + "/cgroup.procs"; }
  // Working set: usage less inactive file cache (what Kubernetes evicts on); nullopt if gone.
  std::optional<std::uint64_t> usage() const;
  // The kernel's OOM kills in this cgroup since create().
  std::uint64_t oom_kills() const;
  std::uint64_t oom_baseline() const { return oom_baseline_; }
  std::vector<int> members() const;
  // create() made the directory (it was not there): no members and no OOM kills yet.
  bool fresh() const { return fresh_; }
  // SIGKILLs every member (cgroup.kill on v2 too); grandchildren that left the process group
  // with setsid are members as well.
  void kill_all() const;
  // rmdir; false while members remain (EBUSY). A directory that is not on a cgroup file system
  // (a test tree) is removed with the files written into it.
  bool remove() const;

 private:
  ReplicaCgroup(MemoryMode mode, std::string path) : mode_(mode), path_(std::move(path)) {}
  std::uint64_t oom_counter() const;

  MemoryMode mode_;
  std::string path_;
  std::uint64_t oom_baseline_ = 0;
  bool fresh_ = false;
};

// The first number after `key ` on a line of a "key value" file (memory.stat, memory.events,
// memory.oom_control); nullopt when absent.
std::optional<std::uint64_t> keyed_value(const std::string& text, const std::string& key);

}  // namespace deployctl
