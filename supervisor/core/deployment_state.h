// What the deployment core (deployment.h) knows and decides from: a plain value of structs,
// maps, vectors, enums and times, so it can be written out and read back
// (protocol/deployment_state_json.h). The daemon's I/O (pids, fds, pipes) is not part of it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replica_machine.h"
#include "spec.h"

namespace deployctl {

// What the core needs of a ServiceSpec.
struct ServiceSettings {
  std::string name;
  int spec_replicas = 1;  // `replicas` as the spec says (a persisted scale is checked against it)
  RolloutSpec rollout;
  ReplicaPolicy policy;             // restart, stop, start_period
  bool ready_when_running = false;  // health.kind = none: running is ready
  std::vector<std::string> listen;  // addresses as written, for the start-up summary
  bool exec_probe = false;          // health.kind = exec (its fds count for scale)
  static ServiceSettings from(const ServiceSpec& spec);
  bool operator==(const ServiceSettings&) const = default;
};

// How a replica's last run ended, for decisions, error messages and status.
struct ExitRecord {
  ExitStatus status;
  ExitReason reason = ExitReason::exit;
  TimePoint at{};
  std::vector<std::string> stderr_tail;
  bool operator==(const ExitRecord&) const = default;
};

// memory.restart_above: no recycle, being replaced by a surge, or the replacement failed.
enum class Recycle { no, running, gave_up };

struct ReplicaRecord {
  std::uint64_t serial = 0;  // unique for the deployment's life: the daemon keys its I/O by it
  int index = 0;
  std::string id;  // "web.2"
  std::uint64_t generation = 0;
  ReplicaPolicy policy;  // of the settings it was started from
  bool ready_when_running = false;
  ReplicaMachineState machine;
  std::optional<ExitRecord> last_exit;
  std::string spawn_error;  // why the last spawn failed; empty after a spawn
  Recycle recycle = Recycle::no;
  int memory_restarts = 0;  // OOM kills of this slot, plus those of the replica it replaced
  bool operator==(const ReplicaRecord&) const = default;
};

// The latest rolling replacement of a service (restart, reload or memory recycle).
struct RolloutState {
  enum class Status { running, done, failed } status = Status::running;
  std::string error;
  bool operator==(const RolloutState&) const = default;
};

struct ServiceState {
  ServiceSettings settings;  // what new replicas are started from
  bool removed = false;      // by a reload: draining to zero, then dropped
  int desired = 0;
  std::uint64_t generation = 0;  // bumped by restart: replicas of older ones are replaced
  std::optional<RolloutState> rollout;
  std::map<int, ReplicaRecord> replicas;  // by index
  std::vector<int> memory_carry;  // memory restarts of recycled replicas, for their successors
  bool operator==(const ServiceState&) const = default;
};

enum class Phase { starting, running, stopping, finished };
const char* phase_name(Phase phase);  // "starting", "running", "stopping", "finished"

// A management request waiting for its answer.
struct Waiter {
  enum class Kind { scale, restart, reload, down };
  std::uint64_t request = 0;
  Kind kind = Kind::scale;
  std::vector<std::string> services;  // to settle (scale, reload) or finish rolling (restart)
  std::vector<std::string> removed;   // reload: services that must have drained
  std::optional<TimePoint> deadline;  // scale: answered with an error after it
  bool operator==(const Waiter&) const = default;
};

struct DeploymentState {
  std::string name;
  Phase phase = Phase::starting;
  TimePoint started_at{};
  bool start_reported = false;  // the start's outcome was announced
  bool stopped_by_request = false;
  int exit_code = 0;   // 1 once the start failed
  int interrupts = 0;  // SIGINT/SIGTERM received
  std::uint64_t next_serial = 1;
  std::map<std::string, ServiceState> services;
  std::vector<std::string> order;  // the names of `services` in spec file order (removed last)
  std::vector<Waiter> waiters;
  std::optional<std::uint64_t> failed_start;  // serial of a replica that failed the start
  bool operator==(const DeploymentState&) const = default;
};

// The replicas of `service` that are ready: the one definition of "ready count".
int ready_count(const ServiceState& service);

// The services in spec file order (docs/spec.md: services keep the order of the file); those a
// reload removed that still drain come last. For status, STATUS=, D-Bus and summaries.
std::vector<const ServiceState*> in_file_order(const DeploymentState& state);

// A spec's starting state: every service at its `replicas`, or at `saved` (the persisted scale)
// where it has an entry.
DeploymentState initial_state(const Spec& spec, const std::map<std::string, int>& saved = {});

}  // namespace deployctl
