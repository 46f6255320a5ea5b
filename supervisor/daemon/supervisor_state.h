// The supervisor's private state (services, replicas, their pipes), shared by the files that
// implement Supervisor: supervisor.cc (lifecycle and decisions), supervisor_replica_io.cc
// (control, notify and output channels) and supervisor_management.cc (the management API).
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

// The latest rolling replacement of a service (restart or reload).
struct Rollout {
  enum class State { running, done, failed } state = State::running;
  std::string error;
};

struct Supervisor::Service {
  std::shared_ptr<const ServiceSpec> spec;  // what new replicas are started from
  bool removed = false;                     // by a reload: draining to zero, then dropped
  int desired;
  std::uint64_t generation = 0;             // bumped by restart: replicas of older ones are replaced
  std::optional<Rollout> rollout;           // the latest rolling replacement
  std::vector<ListenSocket> sockets;
  std::map<int, ReplicaPtr> replicas;
  std::vector<int> memory_carry;  // memory restarts of replicas being recycled, for their successors
};

struct Supervisor::Replica {
  Replica(boost::asio::io_context& io, Service& owner, int slot, TimePoint now)
      : service(owner),
        spec(owner.spec),
        generation(owner.generation),
        index(slot),
        id(spec->name + "." + std::to_string(slot)),
        machine(ReplicaPolicy::from(*spec)),
        out(io, false),
        err(io, true),
        budget(kOutputRate, kOutputBurst, now),
        timer(io),
        health_timer(io) {}

  Service& service;
  std::shared_ptr<const ServiceSpec> spec;  // the settings it was started from
  std::uint64_t generation;
  int index;
  std::string id;
  ReplicaMachine machine;
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
  boost::asio::steady_timer timer, health_timer;
  std::uint64_t timer_generation = 0;
  std::deque<std::string> stderr_tail;
  std::vector<std::string> env;  // of the current run (exec probes run with it)
  std::string spawn_error;
  std::optional<ExitRecord> last_exit;
  std::string status_text;
  std::optional<std::uint64_t> requests;
  bool removed = false;
  ReplicaMemory memory;
};

}  // namespace deployctl
