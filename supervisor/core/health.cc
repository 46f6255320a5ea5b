#include "health.h"

namespace deployctl {

const char* health_name(Health health) {
  switch (health) {
    case Health::unknown: return "unknown";
    case Health::healthy: return "healthy";
    case Health::failing: return "failing";
    case Health::unhealthy: return "unhealthy";
    case Health::none: return "none";
  }
  return "unknown";
}

void HealthChecker::start(TimePoint now) {
  health_ = Health::healthy;
  outstanding_.reset();
  misses_ = 0;
  next_ping_ = now + spec_.interval;
}

std::optional<std::uint64_t> HealthChecker::ping_due(TimePoint now) {
  if (health_ == Health::unknown || health_ == Health::unhealthy) return std::nullopt;
  if (outstanding_ || now < next_ping_) return std::nullopt;
  outstanding_ = next_seq_++;
  sent_at_ = now;
  next_ping_ = now + spec_.interval;
  return outstanding_;
}

void HealthChecker::on_pong(std::uint64_t seq, TimePoint now) {
  if (!outstanding_ || seq != *outstanding_ || health_ == Health::unhealthy) return;
  if (now - sent_at_ > spec_.timeout) return;  // late: check() counts it as a miss
  outstanding_.reset();
  misses_ = 0;
  health_ = Health::healthy;
}

void HealthChecker::on_alive(TimePoint now) {
  if (outstanding_) on_pong(*outstanding_, now);
}

Health HealthChecker::check(TimePoint now) {
  if (outstanding_ && now - sent_at_ >= spec_.timeout) {
    outstanding_.reset();
    ++misses_;
    health_ = misses_ >= spec_.failures ? Health::unhealthy : Health::failing;
  }
  return health_;
}

TimePoint HealthChecker::next_deadline() const {
  if (outstanding_) return sent_at_ + spec_.timeout;
  return next_ping_;
}

Health shown_health(ReplicaState state, bool has_process, bool checks,
                    std::optional<Health> checker) {
  if (!checks) return Health::none;
  const bool checked =
      state == ReplicaState::ready || state == ReplicaState::unhealthy || is_retiring(state);
  if (!has_process || !checked || !checker) return Health::unknown;
  return *checker;
}

}  // namespace deployctl
