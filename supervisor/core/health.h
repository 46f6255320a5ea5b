// Control-socket health checks for one ready replica. Pure: time is an input.
//
// Every `interval` the supervisor sends PING=<seq>; a PONG=<seq> within `timeout` is a pass,
// none is a miss. `failures` consecutive misses make the replica unhealthy.
#pragma once

#include <cstdint>
#include <optional>

#include "clock.h"
#include "replica_machine.h"

namespace deployctl {

enum class Health { unknown, healthy, failing, unhealthy, none };

const char* health_name(Health health);

// The health `status` shows for a replica (docs/cli.md): `none` for a service without health
// checks; what its checker says (`checker`) only while a process that passed its start runs;
// else `unknown`, so a replica in backoff or crash-loop (no pid) never shows an old verdict.
Health shown_health(ReplicaState state, bool has_process, bool checks,
                    std::optional<Health> checker);

class HealthChecker {
 public:
  explicit HealthChecker(const HealthSpec& spec) : spec_(spec) {}

  // The replica became ready at `now`: the first ping is due one interval later.
  void start(TimePoint now);

  // A ping is due: returns its sequence number (the caller sends PING=<seq>), else nullopt.
  std::optional<std::uint64_t> ping_due(TimePoint now);

  void on_pong(std::uint64_t seq, TimePoint now);
  // A sign of life that answers no ping in particular (sd_notify WATCHDOG=1): passes the check
  // that is outstanding, if any.
  void on_alive(TimePoint now);

  // Counts a miss if the outstanding ping timed out; returns the resulting health.
  Health check(TimePoint now);

  // When the caller must next call ping_due/check.
  TimePoint next_deadline() const;

  Health health() const { return health_; }
  int misses() const { return misses_; }

 private:
  HealthSpec spec_;
  Health health_ = Health::unknown;
  std::uint64_t next_seq_ = 1;
  std::optional<std::uint64_t> outstanding_;
  TimePoint sent_at_{};
  TimePoint next_ping_{};
  int misses_ = 0;
};

}  // namespace deployctl
