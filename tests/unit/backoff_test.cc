#include <doctest/doctest.h>

#include "backoff.h"

using namespace deployctl;
using namespace std::chrono_literals;

namespace {
BackoffSpec no_jitter() {
  BackoffSpec spec;
  spec.initial = 100ms;
  spec.max = 1000ms;
  spec.reset_after = 10s;
  spec.jitter = 0;
  return spec;
}
}  // namespace

TEST_CASE("backoff: first restart after a stable run is immediate, then doubles up to max") {
  RestartBackoff backoff(no_jitter(), CrashLoopSpec{100, 60s});
  TimePoint t{};
  std::vector<long long> delays;
  for (int i = 0; i < 7; ++i) {
    TimePoint started = t;
    t += 50ms;  // each run dies quickly
    delays.push_back(backoff.on_exit(started, t, 0.5).delay.count());
  }
  CHECK(delays == std::vector<long long>{0, 100, 200, 400, 800, 1000, 1000});
}

TEST_CASE("backoff: a run of reset_after resets the failure count") {
  RestartBackoff backoff(no_jitter(), CrashLoopSpec{100, 60s});
  TimePoint t{};
  backoff.on_exit(t, t + 1s, 0.5);
  CHECK(backoff.on_exit(t + 1s, t + 2s, 0.5).delay == 100ms);
  CHECK(backoff.on_exit(t + 2s, t + 12s, 0.5).delay == 0ms);  // ran 10 s: stable
  CHECK(backoff.consecutive_failures() == 1);
}

TEST_CASE("backoff: jitter scales the delay within [1-j, 1+j]") {
  BackoffSpec spec = no_jitter();
  spec.jitter = 0.2;
  for (double r : {0.0, 0.25, 0.5, 0.999}) {
    RestartBackoff backoff(spec, CrashLoopSpec{100, 60s});
    TimePoint t{};
    backoff.on_exit(t, t + 1ms, r);
    auto delay = backoff.on_exit(t, t + 2ms, r).delay;
    CHECK(delay >= 80ms);
    CHECK(delay <= 120ms);
  }
  RestartBackoff low(spec, CrashLoopSpec{100, 60s}), high(spec, CrashLoopSpec{100, 60s});
  TimePoint t{};
  low.on_exit(t, t, 0.0);
  high.on_exit(t, t, 0.99);
  CHECK(low.on_exit(t, t, 0.0).delay < high.on_exit(t, t, 0.99).delay);
}

TEST_CASE("backoff: crash loop after `restarts` exits within the window, clears outside it") {
  RestartBackoff backoff(no_jitter(), CrashLoopSpec{3, 10s});
  TimePoint t{};
  CHECK_FALSE(backoff.on_exit(t, t + 1s, 0).crash_loop);
  CHECK_FALSE(backoff.on_exit(t, t + 2s, 0).crash_loop);
  CHECK(backoff.on_exit(t, t + 3s, 0).crash_loop);
  CHECK(backoff.on_exit(t, t + 4s, 0).crash_loop);
  // 30 s later the earlier restarts are outside the 10 s window.
  CHECK_FALSE(backoff.on_exit(t + 29s, t + 30s, 0).crash_loop);
}

TEST_CASE("backoff: huge failure counts do not overflow") {
  BackoffSpec spec = no_jitter();
  spec.max = 30s;
  RestartBackoff backoff(spec, CrashLoopSpec{1000000, 1s});
  TimePoint t{};
  Duration last{};
  for (int i = 0; i < 5000; ++i) last = backoff.on_exit(t, t, 0.5).delay;
  CHECK(last == 30s);
}
