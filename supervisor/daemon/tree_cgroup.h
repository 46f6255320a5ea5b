// Every replica's process tree in a cgroup of its own (edge: cgroup v2 files), so that its
// exit, restart or stop kills the whole tree, descendants that left its process group with
// setsid and a double fork included. Independent of [memory]: used whenever the supervisor can
// create cgroups in the v2 hierarchy (root, or systemd's Delegate=yes).
//
// Layout (docs/memory.md, "Replica cgroups"), derivable from what survives an exec:
//   <supervisor's v2 cgroup>/<deployment cgroup name>/<replica id>
// e.g. /sys/fs/cgroup/system.slice/deployctl@shop.service/deployctl-shop-1a2b3c4d/web.0.
// Not thread-safe.
#pragma once

#include <optional>
#include <string>

#include "cgroup.h"

namespace deployctl {

// Pure: "deployctl-<deployment>-<8 hex digits>", the digits an FNV-1a hash of the state dir, so
// two deployments of one name under different runtime dirs (tests, users) never share it, and
// the same deployment finds it again after an exec or a restart of its supervisor.
std::string deployment_cgroup_name(const std::string& deployment, const std::string& state_dir);

// Where the deployment's cgroup goes: the supervisor's own v2 cgroup dir (host.own_dir when
// given), if it is on a cgroup2 file system (or is a given test dir) and writable; else nullopt
// with *why. Reads, never writes.
std::optional<std::string> tree_cgroup_parent(const CgroupHost& host, std::string* why);

// The deployment's cgroup and its replicas' cgroups below it.
class TreeCgroups {
 public:
  // Creates (or finds again) <parent>/<name>. false with *why: replicas keep process groups.
  bool open(const std::string& parent, const std::string& name, std::string* why);
  bool enabled() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }
  std::string path_of(const std::string& replica_id) const { return dir_ + "/" + replica_id; }

  // The replica's cgroup for a new run, created empty: whatever an earlier run (or an earlier
  // supervisor) left in it is killed first, waiting at most ~100 ms for it to go.
  std::optional<ReplicaCgroup> prepare(const std::string& replica_id, std::string* error) const;
  // The cgroup of a replica that already runs (after an exec of the supervisor), if it exists.
  std::optional<ReplicaCgroup> find(const std::string& replica_id) const;

  // Removes the deployment's cgroup (best effort: only once its replicas' cgroups are gone).
  void close();

 private:
  std::string dir_;
};

}  // namespace deployctl
