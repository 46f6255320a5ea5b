// The per-replica message budget (issue 11 finding 7).
#include <doctest/doctest.h>

#include "message_budget.h"

using namespace deployctl;
using namespace std::chrono_literals;

TEST_CASE("message budget: a burst is handled, the rest dropped and counted, then a pause") {
  TimePoint t{};
  MessageBudget budget(t, 100, 10);
  int handled = 0;
  for (int i = 0; i < 30; ++i) handled += budget.admit(t);
  CHECK(handled == 10);
  CHECK(budget.dropped() == 20);
  // A batch's worth (64) at 100 a second: 640 ms before reading again.
  CHECK(budget.pause(t) == 640ms);
  CHECK(budget.admit(t + 50ms));  // 5 tokens back
  CHECK(budget.pause(t + 50ms) == 0ms);
}

TEST_CASE("message budget: a flooder costs at most about twice the rate, a quiet one nothing") {
  TimePoint t{};
  MessageBudget budget(t);
  // A quiet replica: 100 messages a second for 10 s, all handled.
  for (int i = 0; i < 1000; ++i) CHECK(budget.admit(t + i * 10ms));
  CHECK(budget.dropped() == 0);
  // A flooder read the way the daemon reads: batches, pausing when the budget asks.
  TimePoint now = t + 10s;
  const TimePoint end = now + 10s;
  long reads = 0, handled = 0;
  while (now < end) {
    for (int i = 0; i < MessageBudget::kBatch; ++i, ++reads) handled += budget.admit(now);
    now += std::max<Duration>(budget.pause(now), 1ms);  // at least the next wake-up
  }
  CHECK(handled <= 10 * MessageBudget::kRate + MessageBudget::kBurst + MessageBudget::kBatch);
  CHECK(reads <= 2 * (10 * MessageBudget::kRate + MessageBudget::kBurst) + 2 * MessageBudget::kBatch);
  CHECK(budget.dropped() == static_cast<std::uint64_t>(reads - handled));
}
