// How many file descriptors the supervisor needs to run a deployment, checked against its
// limit (RLIMIT_NOFILE) before `up` starts anything and before `scale` adds replicas. Pure: the
// limit is passed in. See docs/spec.md ("Limits").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "spec.h"

namespace deployctl {

// Held by the supervisor for each running replica: its end of the control socketpair, the read
// ends of its stdout and stderr pipes, its notify socket, and one for a probe (http/tcp
// socket) or the memory cgroup's files.
inline constexpr std::uint64_t kFdsPerReplica = 5;
// An exec health check also holds its check's two output pipes while it runs.
inline constexpr std::uint64_t kFdsPerExecProbe = 2;
// Independent of the spec: stdio, the lock, the event loop (epoll, eventfd, signals, timers),
// the management socket and a few of its clients, D-Bus, the journal, one spawn in flight (its
// error pipe, /dev/null, the child's three channel ends), and a margin.
inline constexpr std::uint64_t kFdsFixed = 64;

// Every fd needed to run the spec's services with their replica counts, except that a service
// named in `replicas` runs that many instead (e.g. the counts a `scale` would set): kFdsFixed,
// each service's listen sockets and log file, and each replica's share.
std::uint64_t fds_needed(const Spec& spec, const std::map<std::string, int>& replicas = {});

// How many listen sockets the supervisor holds for a service: one per address, or with
// `sockets = "per-replica"` one per replica.
std::size_t listen_fds(std::size_t addresses, bool per_replica, int replicas);

// One service's share: its listen sockets, its log file and `replicas` replicas (with an exec
// health check when `exec_probe`).
std::uint64_t service_fds(std::size_t listen_sockets, bool exec_probe, int replicas);

// nullopt if `needed` fits `limit`; else what to tell the operator, naming both numbers and
// what to change, e.g. "web=1000 needs about 5,100 file descriptors but the limit (ulimit -n,
// RLIMIT_NOFILE) is 1024: raise it (ulimit -n, LimitNOFILE= in the unit) or run fewer
// replicas". `what` names what was asked for ("the spec", "web=1000").
std::optional<std::string> fd_limit_error(const std::string& what, std::uint64_t needed,
                                          std::uint64_t limit);

}  // namespace deployctl
