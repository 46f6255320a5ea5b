// Spawning and signalling replica processes (edge: real fork/exec). Not thread-safe; call from
// the supervisor's single event-loop thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace deployctl {

struct SpawnRequest {
  std::vector<std::string> argv;     // argv[0]: a path, or a name searched by resolve_command
  std::vector<std::string> env;      // "KEY=VALUE", the whole environment
  std::string working_dir;           // empty: inherit
  std::vector<int> inherit_fds;      // become fds 3, 4, ... in the child, in this order
  bool set_listen_pid = false;       // add LISTEN_PID=<child pid> (systemd socket convention)
  int stdout_fd = -1;                // child's stdout/stderr; -1: /dev/null
  int stderr_fd = -1;
  struct Credentials {
    uid_t uid;
    gid_t gid;
    std::vector<gid_t> groups;  // supplementary
  };
  std::optional<Credentials> credentials;  // switch to these before exec (needs root)
  // Non-empty: the child starts in this cgroup. The first one on cgroup v2 it is born in (clone3
  // with CLONE_INTO_CGROUP, see clone3.h); into any other (v1, a test tree of plain files), or
  // where clone3 cannot, it moves itself by writing "0" to the file first thing.
  std::string cgroup_procs;
  std::string tree_cgroup_procs;  // the same, in a second hierarchy (the replica's own cgroup)
};

// Looks up `user` (and `group`, else the user's primary group) for SpawnRequest::credentials.
// nullopt with *error if either does not exist.
std::optional<SpawnRequest::Credentials> lookup_credentials(const std::string& user,
                                                            const std::string& group,
                                                            std::string* error);

struct SpawnResult {
  pid_t pid = -1;        // > 0 on success; the child leads its own process group (pgid == pid)
  int error = 0;         // errno of the failed step when pid < 0
  std::string message;   // e.g. "cannot execute 'foo': No such file or directory"
  // Created inside its cgroup v2 (clone3 with CLONE_INTO_CGROUP), not moved there before its
  // exec: a move takes the kernel's cgroup_threadgroup_rwsem (~0.26 ms per spawn).
  bool born_in_cgroup = false;
};

// The soft RLIMIT_NOFILE every child gets (the limit deployctl was started with, before
// raise_fd_limit). Unset: children inherit the supervisor's.
void set_child_fd_limit(std::uint64_t soft);
std::optional<std::uint64_t> child_fd_limit_soft();  // nullopt: unset

// Starts the child the way posix_spawn does (clone with CLONE_VM | CLONE_VFORK: no copy of the
// supervisor's page tables; this call sleeps only until the child has exec'd). Exec failure is
// known for certain before this returns, not guessed from an exit code. With a cgroup v2 in the
// request the child is created in it (clone3, CLONE_INTO_CGROUP), where the kernel allows.
// One spawn at a time: call from one thread only.
SpawnResult spawn_process(const SpawnRequest& request);

// Whether this build can create a child inside its cgroup (clone3 with CLONE_INTO_CGROUP):
// an x86-64 build without the sanitizers. The kernel may still refuse (< 5.7, cgroup v1).
bool spawn_into_cgroup_built();

// Finds `name` like execvp would in `path_env` (a PATH value), then next to this executable.
// Names containing '/' are returned unchanged (relative ones resolve against the working dir).
std::string resolve_command(const std::string& name, const std::string& path_env);

// The environment children start from: this process's own, less what describes this
// process's place under systemd or a supervisor (NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*, and a
// replica's DEPLOYCTL_* variables), which must not leak into the children.
std::vector<std::string> inherited_environment();

// Sets KEY=VALUE in `env`, replacing an entry with the same key.
void set_variable(std::vector<std::string>& env, const std::string& key, const std::string& value);

// The value of PATH in `env`, or "".
std::string path_variable(const std::vector<std::string>& env);

// Signals the process group `pgid`; errors (group already gone) are ignored.
void signal_group(pid_t pgid, int signal);

// Resident set size of one process in bytes; nullopt if it is gone.
std::optional<unsigned long long> resident_bytes(pid_t pid);

// Pids of live processes whose parent is `parent` (/proc/PID/task/*/children), or this process
// (e.g. orphans reparented to a subreaper).
std::vector<pid_t> child_pids(pid_t parent);
std::vector<pid_t> child_pids();


}  // namespace deployctl
