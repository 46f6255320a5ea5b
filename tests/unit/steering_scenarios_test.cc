// Per-replica sockets in the deployment core, in simulated time: a replica on its way out is
// first steered away, then waits for its accept queue to empty plus a grace, and only then gets
// its stop (deployment_sim.h performs SteerAway by reporting queue_empty when nothing is queued).
#include <doctest/doctest.h>

#include <algorithm>

#include "deployment_sim.h"

using namespace deployctl;
using namespace deployctl::sim;

namespace {

ServiceSpec per_replica_web(int replicas) {
  ServiceSpec web = service_spec("web", replicas);  // stop.timeout 5 s: grace 1 s, limit 5 s
  web.listen = {ListenAddress{"127.0.0.1", 8000, "127.0.0.1:8000"}};
  web.sockets = SocketMode::per_replica;
  return web;
}

SimDaemon running_per_replica(int replicas) {
  SimDaemon sim(spec_of({per_replica_web(replicas)}));
  sim.start();
  return sim;
}

// The position in `performed` of `serial`'s first step of `kind` (-1: none).
long step_at(const SimDaemon& sim, std::uint64_t serial, ReplicaAction::Kind kind) {
  const auto& all = sim.performed;
  const auto it = std::find_if(all.begin(), all.end(), [&](const Action& action) {
    return action.kind == Action::Kind::replica && action.replica == serial &&
           action.step.kind == kind;
  });
  return it == all.end() ? -1 : static_cast<long>(it - all.begin());
}

}  // namespace

TEST_SUITE("per-replica sockets") {
  TEST_CASE("policy: steered, the grace is a quarter of stop.timeout up to 1 s, the wait <= 5 s") {
    auto web = per_replica_web(1);
    auto policy = ReplicaPolicy::from(web);
    CHECK(policy.steered);
    CHECK(policy.quiesce_grace == Duration{1000});
    CHECK(policy.quiesce_limit == Duration{5000});
    web.stop.timeout = Duration{2000};
    policy = ReplicaPolicy::from(web);
    CHECK(policy.quiesce_grace == Duration{500});
    CHECK(policy.quiesce_limit == Duration{2000});
    CHECK_FALSE(ReplicaPolicy::from(service_spec("web", 1)).steered);
  }

  TEST_CASE("scale down: steer away, wait for the queue, a grace, then the stop signal") {
    auto sim = running_per_replica(2);
    const std::uint64_t leaving = sim.replica("web", 1).serial;
    sim.queued_connections[leaving] = 3;
    const auto request = sim.scale("web", 1);
    CHECK(sim.states("web") == std::vector<std::string>{"ready", "quiescing"});
    CHECK(step_at(sim, leaving, ReplicaAction::Kind::steer_away) >= 0);
    CHECK(sim.processes[leaving].signals.empty());

    sim.advance(Duration{300});  // the queue is still full: no signal
    CHECK(sim.processes[leaving].signals.empty());
    sim.empty_queue(leaving);
    sim.advance(Duration{999});  // the grace for reading what it accepted
    CHECK(sim.processes[leaving].signals.empty());
    sim.advance(Duration{1});
    CHECK(sim.processes[leaving].signals == std::vector<int>{SIGTERM});
    CHECK(step_at(sim, leaving, ReplicaAction::Kind::steer_away) <
          step_at(sim, leaving, ReplicaAction::Kind::send_drain));
    CHECK(sim.replies[request].ok);
    CHECK(sim.states("web") == std::vector<std::string>{"ready"});
    CHECK(sim.replica("web", 0).machine.state == ReplicaState::ready);
  }

  TEST_CASE("a queue that never empties delays the stop by quiesce_limit at most") {
    auto sim = running_per_replica(2);
    const std::uint64_t leaving = sim.replica("web", 1).serial;
    sim.queued_connections[leaving] = 1;
    sim.scale("web", 1);
    sim.advance(Duration{4999});
    CHECK(sim.processes[leaving].signals.empty());
    sim.advance(Duration{1});
    CHECK(sim.processes[leaving].signals == std::vector<int>{SIGTERM});
    CHECK_FALSE(sim.processes[leaving].alive);
  }

  TEST_CASE("rolling restart: each old replica is steered away before its stop") {
    auto sim = running_per_replica(2);
    const auto old = sim.serials("web");
    const auto request = sim.restart();
    sim.advance(Duration{5000});
    CHECK(sim.replies[request].ok);
    for (auto serial : old) {
      const long steered = step_at(sim, serial, ReplicaAction::Kind::steer_away);
      CHECK(steered >= 0);
      CHECK(steered < step_at(sim, serial, ReplicaAction::Kind::send_drain));
      CHECK(sim.processes[serial].signals == std::vector<int>{SIGTERM});
    }
    CHECK(sim.states("web") == std::vector<std::string>{"ready", "ready"});
  }

  TEST_CASE("down while quiescing: the stop signal goes at once") {
    auto sim = running_per_replica(2);
    const std::uint64_t leaving = sim.replica("web", 1).serial;
    sim.queued_connections[leaving] = 2;
    sim.scale("web", 1);
    CHECK(sim.replica("web", 1).machine.state == ReplicaState::quiescing);
    sim.down();
    CHECK(sim.processes[leaving].signals == std::vector<int>{SIGTERM});
    CHECK(sim.finished);
  }

  TEST_CASE("a replica that exits while quiescing is retired, not restarted") {
    auto sim = running_per_replica(2);
    const std::uint64_t leaving = sim.replica("web", 1).serial;
    sim.queued_connections[leaving] = 2;
    const auto request = sim.scale("web", 1);
    sim.exit(leaving, {.code = 1});
    CHECK(sim.states("web") == std::vector<std::string>{"ready"});
    CHECK(sim.replies[request].ok);
    CHECK(sim.spawns() == 2);
  }
}
