// The ACME schedule in simulated time: issue, renewal point and jitter, backoff, forced renewal.
#include "acme_schedule.h"

#include <doctest/doctest.h>

#include <algorithm>

using namespace deployctl;

namespace {

constexpr std::int64_t kDay = 86400;
constexpr std::int64_t kT0 = 1'800'000'000;  // a fixed "now"

// A 90-day certificate issued at `at`.
CertificateLifetime ninety_days(std::int64_t at) { return {at, at + 90 * kDay}; }

}  // namespace

TEST_CASE("acme schedule: no stored certificate means issue at once") {
  AcmeSchedule schedule;
  schedule.start(std::nullopt, kT0, 0.5);
  CHECK(schedule.due(kT0));
  CHECK_FALSE(schedule.has_valid(kT0));

  AcmeSchedule expired;
  expired.start(CertificateLifetime{kT0 - 100 * kDay, kT0 - kDay}, kT0, 0.5);
  CHECK(expired.due(kT0));
  CHECK_FALSE(expired.has_valid(kT0));
}

TEST_CASE("acme schedule: renew when a third of the lifetime is left, earlier by the jitter") {
  const CertificateLifetime life = ninety_days(kT0 - 10 * kDay);
  const std::int64_t third_left = life.not_after - 30 * kDay;
  AcmeSchedule no_jitter;
  no_jitter.start(life, kT0, 0.0);
  CHECK(no_jitter.has_valid(kT0));
  CHECK(no_jitter.state().next_attempt == third_left);
  CHECK_FALSE(no_jitter.due(third_left - 1));
  CHECK(no_jitter.due(third_left));

  AcmeSchedule jittered;
  jittered.start(life, kT0, 0.999);
  CHECK(jittered.state().next_attempt < third_left);
  CHECK(jittered.state().next_attempt >= third_left - AcmePolicy{}.jitter_max);

  // A one-hour certificate: jitter at most a tenth of it.
  AcmeSchedule short_lived;
  short_lived.start(CertificateLifetime{kT0, kT0 + 3600}, kT0, 0.999);
  CHECK(short_lived.state().next_attempt >= kT0 + 3600 - 1200 - 360);
  CHECK(short_lived.state().next_attempt <= kT0 + 3600 - 1200);
}

TEST_CASE("acme schedule: failures back off, doubling up to the cap; success resets") {
  AcmePolicy policy;
  AcmeSchedule schedule(policy);
  schedule.start(std::nullopt, kT0, 0.5);
  std::int64_t now = kT0;
  std::int64_t previous_delay = 0;
  for (int failure = 1; failure <= 12; ++failure) {
    REQUIRE(schedule.due(now));
    schedule.attempt_started(now);
    CHECK_FALSE(schedule.due(now));  // an attempt in flight is not due again
    now += 5;                        // lego ran for 5 s
    schedule.failed(now, 0.5);       // 0.5: factor 1.0, no jitter
    const std::int64_t delay = schedule.state().next_attempt - now;
    CHECK(schedule.state().consecutive_failures == failure);
    if (failure == 1) CHECK(delay == policy.retry_initial);
    if (failure > 1) CHECK(delay == std::min(2 * previous_delay, policy.retry_max));
    CHECK(delay <= policy.retry_max);
    previous_delay = delay;
    now = schedule.state().next_attempt;
  }
  CHECK(previous_delay == policy.retry_max);

  schedule.attempt_started(now);
  schedule.succeeded(ninety_days(now), now + 3, 0.0);
  CHECK(schedule.state().consecutive_failures == 0);
  CHECK(schedule.has_valid(now + 3));
  CHECK(schedule.state().next_attempt == now + 60 * kDay);
}

TEST_CASE("acme schedule: a failed renewal keeps the old certificate valid and retries") {
  const CertificateLifetime life = ninety_days(kT0);
  AcmeSchedule schedule;
  schedule.start(life, kT0, 0.0);
  std::int64_t now = schedule.state().next_attempt;
  schedule.attempt_started(now);
  schedule.failed(now + 1, 0.0);  // factor 0.75
  CHECK(schedule.has_valid(now + 1));
  CHECK(schedule.state().next_attempt == now + 1 + 45);
}

TEST_CASE("acme schedule: forced renewal is due at once; a retry jitter spreads attempts") {
  AcmeSchedule schedule;
  schedule.start(ninety_days(kT0), kT0, 0.3);
  CHECK_FALSE(schedule.due(kT0 + kDay));
  schedule.force(kT0 + kDay);
  CHECK(schedule.due(kT0 + kDay));

  AcmeSchedule low, high;
  low.failed(kT0, 0.0);
  high.failed(kT0, 0.999);
  CHECK(low.state().next_attempt == kT0 + 45);
  CHECK(high.state().next_attempt == kT0 + 74);
}

TEST_CASE("acme schedule: a certificate already expired when issued counts as a failure") {
  AcmeSchedule schedule;
  schedule.start(std::nullopt, kT0, 0.0);
  schedule.attempt_started(kT0);
  schedule.succeeded(CertificateLifetime{kT0 - 2 * kDay, kT0 - kDay}, kT0 + 1, 0.5);
  CHECK_FALSE(schedule.has_valid(kT0 + 1));
  CHECK(schedule.state().consecutive_failures == 1);
  CHECK(schedule.state().next_attempt == kT0 + 1 + 60);
}
