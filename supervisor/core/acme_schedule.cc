#include "acme_schedule.h"

#include <algorithm>

namespace deployctl {

bool AcmeSchedule::has_valid(std::int64_t now) const {
  const auto& life = state_.certificate;
  return life && life->not_before <= now && now < life->not_after;
}

// A third of the lifetime before expiry, earlier by up to jitter_max (never more than a tenth
// of the lifetime, so a short-lived certificate is not renewed at once).
std::int64_t AcmeSchedule::renewal_time(const CertificateLifetime& life, double random01) const {
  const std::int64_t lifetime = std::max<std::int64_t>(life.not_after - life.not_before, 0);
  const std::int64_t jitter_max = std::min(policy_.jitter_max, lifetime / 10);
  const auto jitter = static_cast<std::int64_t>(random01 * static_cast<double>(jitter_max));
  return life.not_after - lifetime / 3 - jitter;
}

// retry_initial * 2^(failures-1), capped at retry_max, scaled by [0.75, 1.25).
std::int64_t AcmeSchedule::retry_delay(int failures, double random01) const {
  std::int64_t delay = policy_.retry_initial;
  for (int i = 1; i < failures && delay < policy_.retry_max; ++i) delay *= 2;
  delay = std::min(delay, policy_.retry_max);
  const auto scaled = static_cast<std::int64_t>(static_cast<double>(delay) * (0.75 + random01 / 2));
  return std::max(scaled, policy_.min_interval);
}

void AcmeSchedule::start(std::optional<CertificateLifetime> stored, std::int64_t now,
                         double random01) {
  state_.certificate = stored;
  state_.next_attempt = has_valid(now) ? renewal_time(*stored, random01) : now;
}

void AcmeSchedule::attempt_started(std::int64_t now) {
  state_.last_attempt = now;
  state_.next_attempt = now + policy_.min_interval;  // until the outcome is known
}

void AcmeSchedule::succeeded(CertificateLifetime renewed, std::int64_t now, double random01) {
  state_.certificate = renewed;
  state_.consecutive_failures = 0;
  state_.next_attempt =
      std::max(renewal_time(renewed, random01), state_.last_attempt + policy_.min_interval);
  if (!has_valid(now)) failed(now, random01);  // the CA handed out something already unusable
}

void AcmeSchedule::failed(std::int64_t now, double random01) {
  ++state_.consecutive_failures;
  state_.next_attempt = now + retry_delay(state_.consecutive_failures, random01);
}

void AcmeSchedule::force(std::int64_t now) { state_.next_attempt = now; }

}  // namespace deployctl
