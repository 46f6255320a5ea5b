// The daemon's private state (services' specs and sockets, replicas' processes and pipes),
// shared by the files that implement Supervisor: supervisor.cc (the event queue, spawning,
// exits), supervisor_replica_io.cc (control, notify and output channels),
// supervisor_management.cc (the management API), supervisor_memory.cc and dbus_supervisor.cc.
// The decisions and their state are the core's (core/deployment.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "memory_state.h"
#include "message_budget.h"
#include "replica_sockets.h"
#include "supervisor.h"

namespace deployctl {

inline constexpr std::size_t kStderrTail = 20;

// The replica's own port ({port}): `port` + index when the service sets `port`.
inline std::optional<int> replica_port(const ServiceSpec& spec, int index) {
  if (!spec.port) return std::nullopt;
  return *spec.port + index;
}

inline bool is_probe(HealthKind kind) {
  return kind == HealthKind::http || kind == HealthKind::tcp || kind == HealthKind::exec;
}
// How long probes of a shared socket may pass before a replica not seen accepting on it is
// counted ready anyway (supervisor_replica_io.cc, probe_until_ready).
inline constexpr Duration kSharedSocketGrace{5000};
inline constexpr double kOutputRate = 1024 * 1024;   // bytes/s read from one replica's stdout+stderr
inline constexpr double kOutputBurst = 1024 * 1024;

inline long long ms_between(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}


struct Supervisor::OutputPipe {
  OutputPipe(boost::asio::io_context& io, bool is_err) : pause(io), is_stderr(is_err) {}
  std::unique_ptr<boost::asio::posix::stream_descriptor> fd;
  LineSplitter splitter;
  boost::asio::steady_timer pause;
  bool is_stderr;
};

// The daemon's side of a service: its spec and its listen sockets. Decisions are the core's.
struct Supervisor::Service {
  std::shared_ptr<const ServiceSpec> spec;  // what new replicas are started from
  std::vector<ListenSocket> sockets;
  // `sockets = "per-replica"`: each replica's own socket, by address text (supervisor_replica_sockets.cc).
  std::map<std::string, std::unique_ptr<ReplicaSockets>> replica_sockets;
};

// The daemon's side of one core replica (same serial): its process, channels and what it
// reports; the core's ReplicaRecord holds its lifecycle.
struct Supervisor::Replica {
  Replica(boost::asio::io_context& io, const ReplicaRecord& record, const std::string& owner,
          std::shared_ptr<const ServiceSpec> started_from, TimePoint now)
      : serial(record.serial),
        service(owner),
        spec(std::move(started_from)),
        index(record.index),
        id(record.id),
        out(io, false),
        err(io, true),
        budget(kOutputRate, kOutputBurst, now),
        messages(now),
        timer(io),
        health_timer(io) {}

  std::uint64_t serial;
  std::string service;
  std::shared_ptr<const ServiceSpec> spec;  // the settings it was started from
  int index;
  std::string id;
  std::optional<HealthChecker> health;
  pid_t pid = -1;
  pid_t exited_pid = -1;
  std::uint64_t run = 0;  // incremented per spawn: handlers of an older run are stale
  TimePoint spawned_at{};
  std::unique_ptr<boost::asio::posix::stream_descriptor> control;
  bool speaks_control = false;  // sent a valid message on the control socket in this run
  std::unique_ptr<boost::asio::posix::stream_descriptor> notify;  // its NOTIFY_SOCKET (sd_notify)
  OutputPipe out, err;
  ReadBudget budget;
  MessageBudget messages;  // control + notify messages, across the slot's runs
  boost::asio::steady_timer timer, health_timer;
  KeptProbeConnection probe_connection;  // http checks of the current run (probes.h)
  std::uint64_t timer_generation = 0;
  std::deque<std::string> stderr_tail;
  std::vector<std::string> env;  // of the current run (exec probes run with it)
  std::string status_text;
  std::optional<std::uint64_t> requests;
  bool removed = false;
  ReplicaMemory memory;
  // Adopted after a crash of the previous supervisor (supervisor_crash.cc): not our child, so
  // its exit is seen on this pidfd and its exit status is unknown.
  std::unique_ptr<boost::asio::posix::stream_descriptor> pidfd;
  std::optional<ReplicaCgroup> tree_cgroup;  // its tree's cgroup (supervisor_tree.cc), if any
};

struct Supervisor::PendingReload {
  Spec next;
  std::map<std::string, std::vector<ListenSocket>> bound;  // its new addresses, by service
};

}  // namespace deployctl
