#include <doctest/doctest.h>

#include "replica_machine.h"

using namespace deployctl;
using namespace std::chrono_literals;
using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

namespace {

ReplicaPolicy policy(RestartPolicy restart = RestartPolicy::always) {
  ReplicaPolicy p;
  p.restart.policy = restart;
  p.restart.backoff = BackoffSpec{100ms, 1s, 10s, 0.0};
  p.restart.crash_loop = CrashLoopSpec{3, 60s};
  p.stop = StopSpec{SIGTERM, 5s};
  p.start_period = 2s;
  return p;
}

// Drives one machine with a hand-advanced clock and records what it asked for.
struct Driver {
  ReplicaMachine machine;
  TimePoint now{};
  explicit Driver(ReplicaPolicy p = policy()) : machine(p) {}
  std::vector<ReplicaAction> send(Kind kind, ExitStatus status = {}) {
    return machine.handle(ReplicaEvent{kind, status}, now, 0.5);
  }
  std::vector<Act> kinds(Kind kind, ExitStatus status = {}) {
    std::vector<Act> out;
    for (auto& action : send(kind, status)) out.push_back(action.kind);
    return out;
  }
  void run_until_ready() {
    send(Kind::start);
    send(Kind::spawned);
    send(Kind::ready);
  }
};

const ExitStatus killed{std::nullopt, SIGKILL};
const ExitStatus exit1{1, std::nullopt};
const ExitStatus exit0{0, std::nullopt};

}  // namespace

TEST_CASE("replica: start, spawn, ready") {
  Driver d;
  CHECK(d.kinds(Kind::start) == std::vector<Act>{Act::spawn});
  CHECK(d.machine.state() == ReplicaState::starting);
  auto armed = d.send(Kind::spawned);
  REQUIRE(armed.size() == 1);
  CHECK(armed[0] == ReplicaAction{.kind = Act::arm_timer, .delay = 2s});
  CHECK(d.kinds(Kind::ready) == std::vector<Act>{Act::cancel_timer, Act::start_health});
  CHECK(d.machine.state() == ReplicaState::ready);
}

TEST_CASE("replica: killed after being ready restarts at once, then backs off") {
  Driver d;
  d.run_until_ready();
  d.now += 1s;
  auto actions = d.send(Kind::exited, killed);
  REQUIRE(actions.size() == 3);
  CHECK(actions[1] == ReplicaAction{.kind = Act::record_exit, .reason = ExitReason::signal,
                                    .status = killed});
  CHECK(actions[2].kind == Act::spawn);
  CHECK(d.machine.restarts() == 1);
  d.send(Kind::spawned);
  d.send(Kind::ready);
  d.now += 1s;
  actions = d.send(Kind::exited, exit1);
  CHECK(d.machine.state() == ReplicaState::backoff);
  CHECK(actions.back() == ReplicaAction{.kind = Act::arm_timer, .delay = 100ms});
  d.now += 100ms;
  CHECK(d.kinds(Kind::timer) == std::vector<Act>{Act::spawn});
  CHECK(d.machine.restarts() == 2);
}

TEST_CASE("replica: repeated crashes grow the delay and reach crash-loop") {
  Driver d;
  d.run_until_ready();
  std::vector<long long> delays;
  for (int i = 0; i < 4; ++i) {
    d.now += 200ms;
    auto actions = d.send(Kind::exited, exit1);
    if (actions.back().kind == Act::arm_timer) {
      delays.push_back(actions.back().delay.count());
      d.now += actions.back().delay;
      d.send(Kind::timer);
    }
    d.send(Kind::spawned);
    d.send(Kind::ready);
  }
  CHECK(delays == std::vector<long long>{100, 200, 400});
  d.now += 200ms;
  d.send(Kind::exited, exit1);
  CHECK(d.machine.state() == ReplicaState::crash_loop);
  d.now += 1s;
  d.send(Kind::timer);
  CHECK(d.machine.state() == ReplicaState::starting);  // crash-loop keeps backing off
}

TEST_CASE("replica: fail fast while starting up if it never became ready") {
  Driver d;
  d.machine.set_fail_fast(true);
  d.send(Kind::start);
  d.send(Kind::spawned);
  auto actions = d.send(Kind::exited, exit1);
  CHECK(actions.back().kind == Act::start_failed);
  CHECK(d.machine.state() == ReplicaState::failed);

  Driver exec;
  exec.machine.set_fail_fast(true);
  exec.send(Kind::start);
  actions = exec.send(Kind::spawn_failed);
  CHECK(actions[1].reason == ExitReason::exec);
  CHECK(actions.back().kind == Act::start_failed);
}

TEST_CASE("replica: no fail fast once it has been ready") {
  Driver d;
  d.machine.set_fail_fast(true);
  d.run_until_ready();
  CHECK(d.send(Kind::exited, exit1).back().kind == Act::spawn);
}

TEST_CASE("replica: restart policies") {
  Driver never(policy(RestartPolicy::never));
  never.run_until_ready();
  never.send(Kind::exited, exit1);
  CHECK(never.machine.state() == ReplicaState::failed);

  Driver on_failure(policy(RestartPolicy::on_failure));
  on_failure.run_until_ready();
  on_failure.send(Kind::exited, exit0);
  CHECK(on_failure.machine.state() == ReplicaState::stopped);
  on_failure.send(Kind::start);
  on_failure.send(Kind::ready);
  CHECK(on_failure.send(Kind::exited, exit1).back().kind == Act::spawn);
}

TEST_CASE("replica: health failure signals, then SIGKILL after stop.timeout, then restarts") {
  Driver d;
  d.run_until_ready();
  auto actions = d.send(Kind::unhealthy);
  REQUIRE(actions.size() == 2);
  CHECK(actions[0] == ReplicaAction{.kind = Act::signal, .signal = SIGTERM});
  CHECK(actions[1] == ReplicaAction{.kind = Act::arm_timer, .delay = 5s});
  CHECK(d.machine.state() == ReplicaState::unhealthy);
  d.now += 5s;
  CHECK(d.kinds(Kind::timer) == std::vector<Act>{Act::kill});
  actions = d.send(Kind::exited, killed);
  CHECK(actions[1].reason == ExitReason::health);
  CHECK(actions.back().kind == Act::spawn);
}

TEST_CASE("replica: start timeout") {
  Driver d;
  d.send(Kind::start);
  d.send(Kind::spawned);
  d.now += 2s;
  CHECK(d.kinds(Kind::timer) == std::vector<Act>{Act::signal, Act::arm_timer});
  CHECK(d.send(Kind::exited, ExitStatus{std::nullopt, SIGTERM})[1].reason ==
        ExitReason::start_timeout);
}

TEST_CASE("replica: protocol violation replaces it") {
  Driver d;
  d.run_until_ready();
  CHECK(d.kinds(Kind::protocol_error) == std::vector<Act>{Act::signal, Act::arm_timer});
  CHECK(d.send(Kind::exited, exit0)[1].reason == ExitReason::protocol);
}

TEST_CASE("replica: drain retires it whatever the exit") {
  Driver d;
  d.run_until_ready();
  auto actions = d.send(Kind::drain);
  CHECK(actions[0].kind == Act::send_drain);
  CHECK(d.machine.retiring());
  CHECK(d.send(Kind::drain).empty());  // draining twice changes nothing
  actions = d.send(Kind::exited, exit0);
  CHECK(actions[1] == ReplicaAction{.kind = Act::record_exit, .reason = ExitReason::stop,
                                    .status = exit0});
  CHECK(actions.back().kind == Act::retire);
  CHECK(d.machine.state() == ReplicaState::stopped);
}

TEST_CASE("replica: stop during backoff retires without a process") {
  Driver d;
  d.run_until_ready();
  d.send(Kind::exited, exit1);  // immediate restart
  d.send(Kind::exited, exit1);  // backoff
  REQUIRE(d.machine.state() == ReplicaState::backoff);
  CHECK(d.kinds(Kind::stop) == std::vector<Act>{Act::cancel_timer, Act::retire});
  CHECK_FALSE(d.machine.running());
}

TEST_CASE("replica: stop of a running replica escalates to SIGKILL") {
  Driver d;
  d.run_until_ready();
  CHECK(d.kinds(Kind::stop) == std::vector<Act>{Act::signal, Act::arm_timer});
  CHECK(d.send(Kind::stop).empty());
  CHECK(d.kinds(Kind::timer) == std::vector<Act>{Act::kill});
  CHECK(d.kinds(Kind::exited, killed).back() == Act::retire);
}

TEST_CASE("replica: events that do not apply are ignored") {
  Driver d;
  CHECK(d.send(Kind::ready).empty());
  CHECK(d.send(Kind::exited, exit1).empty());
  CHECK(d.send(Kind::timer).empty());
  d.run_until_ready();
  CHECK(d.send(Kind::ready).empty());
  CHECK(d.send(Kind::spawned).empty());
}

TEST_CASE("replica machine: describe_exit") {
  CHECK(describe_exit(0, std::nullopt) == "code 0");
  CHECK(describe_exit(std::nullopt, 9) == "signal 9 (SIGKILL)");
  CHECK(describe_exit(std::nullopt, std::nullopt) == "not started");
}
