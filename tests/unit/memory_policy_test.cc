#include <doctest/doctest.h>

#include "memory_policy.h"
#include "replica_machine.h"

using namespace deployctl;
using namespace std::chrono_literals;

namespace {
constexpr std::uint64_t MiB = 1024 * 1024;

MemoryPolicy soft_only() {
  return MemoryPolicy({std::nullopt, 100 * MiB}, MemoryPolicyOptions{1000ms, 3, false});
}
}  // namespace

TEST_CASE("memory policy: under both limits nothing happens") {
  MemoryPolicy policy({200 * MiB, 100 * MiB}, MemoryPolicyOptions{1000ms, 3, true});
  TimePoint t{};
  for (int i = 0; i < 50; ++i, t += 100ms) {
    CHECK(policy.observe(100 * MiB, t) == MemoryVerdict::none);  // at the limit is not above
  }
}

TEST_CASE("memory policy: sampling mode kills at the first sample above max") {
  MemoryPolicy policy({200 * MiB, std::nullopt}, MemoryPolicyOptions{1000ms, 3, true});
  TimePoint t{};
  CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::none);
  CHECK(policy.observe(200 * MiB + 1, t + 100ms) == MemoryVerdict::kill);
}

TEST_CASE("memory policy: in cgroup modes max is the kernel's, never a kill from here") {
  MemoryPolicy policy({200 * MiB, std::nullopt}, MemoryPolicyOptions{1000ms, 3, false});
  CHECK(policy.observe(500 * MiB, TimePoint{}) == MemoryVerdict::none);
}

TEST_CASE("memory policy: staying above restart_above for the window recycles") {
  MemoryPolicy policy = soft_only();
  TimePoint t{};
  std::vector<MemoryVerdict> verdicts;
  for (int i = 0; i < 12; ++i, t += 100ms) verdicts.push_back(policy.observe(101 * MiB, t));
  // Samples at 0..1100 ms: the window is reached by the sample at 1000 ms.
  for (int i = 0; i < 10; ++i) CHECK(verdicts[i] == MemoryVerdict::none);
  CHECK(verdicts[10] == MemoryVerdict::recycle);
  CHECK(verdicts[11] == MemoryVerdict::recycle);  // repeats; the caller acts once
}

TEST_CASE("memory policy: a spike below the window, or one dip, restarts the count") {
  MemoryPolicy policy = soft_only();
  TimePoint t{};
  for (int i = 0; i < 9; ++i, t += 100ms) CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::none);
  CHECK(policy.observe(90 * MiB, t) == MemoryVerdict::none);  // the dip
  t += 100ms;
  for (int i = 0; i < 10; ++i, t += 100ms) CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::none);
  CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::recycle);
}

TEST_CASE("memory policy: the window needs enough samples, not only elapsed time") {
  MemoryPolicy policy = soft_only();
  TimePoint t{};
  CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::none);
  CHECK(policy.observe(150 * MiB, t + 5s) == MemoryVerdict::none);  // two samples: a stall
  CHECK(policy.observe(150 * MiB, t + 5100ms) == MemoryVerdict::recycle);
}

TEST_CASE("memory policy: reset forgets the previous run") {
  MemoryPolicy policy = soft_only();
  TimePoint t{};
  for (int i = 0; i < 11; ++i, t += 100ms) policy.observe(150 * MiB, t);
  policy.reset();
  CHECK(policy.observe(150 * MiB, t) == MemoryVerdict::none);
}

TEST_CASE("replica machine: an exit flagged out_of_memory is reason oom and restarts") {
  ReplicaPolicy p;
  p.restart.policy = RestartPolicy::on_failure;
  p.restart.backoff = BackoffSpec{100ms, 1s, 10s, 0.0};
  p.restart.crash_loop = CrashLoopSpec{5, 60s};
  ReplicaMachine machine(p);
  TimePoint t{};
  machine.handle({ReplicaEvent::Kind::start}, t, 0.5);
  machine.handle({ReplicaEvent::Kind::spawned}, t, 0.5);
  machine.handle({ReplicaEvent::Kind::ready}, t, 0.5);
  auto actions = machine.handle({ReplicaEvent::Kind::exited, ExitStatus{std::nullopt, 9}, true},
                                t + 20s, 0.5);
  REQUIRE(actions.size() >= 3);
  CHECK(actions[1] == ReplicaAction{.kind = ReplicaAction::Kind::record_exit,
                                    .reason = ExitReason::oom,
                                    .status = ExitStatus{std::nullopt, 9}});
  CHECK(actions.back().kind == ReplicaAction::Kind::spawn);
  CHECK(std::string(reason_name(ExitReason::oom)) == "oom");
}

TEST_CASE("replica machine: a stop in progress keeps reason stop even if the kill was an OOM") {
  ReplicaMachine machine(ReplicaPolicy{});
  TimePoint t{};
  machine.handle({ReplicaEvent::Kind::start}, t, 0.5);
  machine.handle({ReplicaEvent::Kind::ready}, t, 0.5);
  machine.handle({ReplicaEvent::Kind::stop}, t, 0.5);
  auto actions = machine.handle({ReplicaEvent::Kind::exited, ExitStatus{std::nullopt, 9}, true},
                                t, 0.5);
  REQUIRE(actions.size() >= 2);
  CHECK(actions[1].reason == ExitReason::stop);
}
