#include <doctest/doctest.h>

#include "health.h"

using namespace deployctl;
using namespace std::chrono_literals;

namespace {
HealthSpec spec(int failures = 3) {
  HealthSpec h;
  h.interval = 1000ms;
  h.timeout = 200ms;
  h.failures = failures;
  return h;
}
}  // namespace

TEST_CASE("health: nothing is due before start or before the first interval") {
  HealthChecker checker(spec());
  TimePoint t{};
  CHECK_FALSE(checker.ping_due(t + 5s));
  checker.start(t);
  CHECK(checker.health() == Health::healthy);
  CHECK_FALSE(checker.ping_due(t + 999ms));
  CHECK(checker.next_deadline() == t + 1000ms);
  CHECK(checker.ping_due(t + 1000ms) == 1u);
  CHECK_FALSE(checker.ping_due(t + 1001ms));  // one outstanding at a time
}

TEST_CASE("health: a timely pong keeps it healthy; the next ping is an interval later") {
  HealthChecker checker(spec());
  TimePoint t{};
  checker.start(t);
  auto seq = checker.ping_due(t + 1s);
  REQUIRE(seq);
  checker.on_pong(*seq, t + 1s + 50ms);
  CHECK(checker.check(t + 1s + 300ms) == Health::healthy);
  CHECK(checker.next_deadline() == t + 2s);
  CHECK(checker.ping_due(t + 2s) == 2u);
}

TEST_CASE("health: `failures` consecutive misses make it unhealthy, a pass in between resets") {
  HealthChecker checker(spec(3));
  TimePoint t{};
  checker.start(t);
  auto miss = [&](TimePoint at) {
    REQUIRE(checker.ping_due(at));
    CHECK(checker.next_deadline() == at + 200ms);
    return checker.check(at + 200ms);
  };
  CHECK(miss(t + 1s) == Health::failing);
  CHECK(miss(t + 2s) == Health::failing);
  auto seq = checker.ping_due(t + 3s);
  checker.on_pong(*seq, t + 3s + 10ms);  // pass: resets
  CHECK(checker.check(t + 3s + 200ms) == Health::healthy);
  CHECK(miss(t + 4s) == Health::failing);
  CHECK(miss(t + 5s) == Health::failing);
  CHECK(miss(t + 6s) == Health::unhealthy);
  CHECK_FALSE(checker.ping_due(t + 10s));  // no more pings once unhealthy
}

TEST_CASE("health: wrong or late pongs do not count") {
  HealthChecker checker(spec(1));
  TimePoint t{};
  checker.start(t);
  auto seq = checker.ping_due(t + 1s);
  checker.on_pong(*seq + 1, t + 1s + 10ms);
  checker.on_pong(*seq, t + 1s + 250ms);  // after the timeout
  CHECK(checker.check(t + 1s + 250ms) == Health::unhealthy);
}

TEST_CASE("health shown in status: only a running process that passed its start has a verdict") {
  using S = ReplicaState;
  CHECK(shown_health(S::ready, true, true, Health::healthy) == Health::healthy);
  CHECK(shown_health(S::unhealthy, true, true, Health::unhealthy) == Health::unhealthy);
  CHECK(shown_health(S::draining, true, true, Health::failing) == Health::failing);
  // No process: the checker's verdict is of an earlier run (issue 11 finding 9).
  CHECK(shown_health(S::backoff, false, true, Health::healthy) == Health::unknown);
  CHECK(shown_health(S::crash_loop, false, true, Health::failing) == Health::unknown);
  CHECK(shown_health(S::failed, false, true, Health::healthy) == Health::unknown);
  CHECK(shown_health(S::starting, true, true, Health::healthy) == Health::unknown);
  CHECK(shown_health(S::ready, true, true, std::nullopt) == Health::unknown);
  CHECK(shown_health(S::backoff, false, false, std::nullopt) == Health::none);
}
