#include "deployment_state_json.h"

#include <doctest/doctest.h>

#include "deployment_sim.h"

using namespace deployctl;
using namespace deployctl::sim;

namespace {

DeploymentState read_back(const DeploymentState& state) {
  auto parsed = json::parse(json::dump(to_json(state)));
  REQUIRE(parsed);
  auto decoded = deployment_state_from_json(*parsed);
  REQUIRE(decoded);
  return *decoded;
}

}  // namespace

TEST_CASE("deployment state: a busy state is written out and read back unchanged") {
  auto web = service_spec("web", 2);
  web.listen = {{"127.0.0.1", 8000, "127.0.0.1:8000"}};
  web.restart.policy = RestartPolicy::on_failure;
  SimDaemon sim(spec_of({web, service_spec("worker", 1)}));
  sim.start();
  const auto worker = sim.serials("worker")[0];
  sim.exit(worker, {.code = 1});
  sim.exit(worker, {.code = 1});  // backoff: a timer, backoff history
  sim.behaviour["web"].becomes_ready = false;
  sim.restart({"web"});  // a restart waiter, a rollout
  sim.feed({.kind = Event::Kind::memory_high, .replica = sim.serials("web")[0], .bytes = 1});
  sim.behaviour["web"].obeys_stop = false;   // still stopping: a stop timer
  sim.request({.kind = Event::Kind::down});  // a down waiter, stopping

  const DeploymentState& state = sim.core.state();
  CHECK(state.phase == Phase::stopping);
  CHECK_FALSE(state.waiters.empty());
  CHECK(read_back(state) == state);
}

TEST_CASE("deployment state: the services' file order survives the round trip") {
  SimDaemon sim(spec_of({service_spec("zeta", 1), service_spec("alpha", 1)}));
  sim.start();
  const DeploymentState back = read_back(sim.core.state());
  CHECK(back == sim.core.state());
  CHECK(back.order == std::vector<std::string>{"zeta", "alpha"});
}

TEST_CASE("deployment state: a failed rollout survives the round trip") {
  auto sim = SimDaemon(spec_of({service_spec("web", 2)}));
  sim.start();
  sim.behaviour["web"].exits_at_start = 4;
  sim.restart();
  const DeploymentState& state = sim.core.state();
  REQUIRE(state.services.at("web").rollout);
  CHECK(state.services.at("web").rollout->status == RolloutState::Status::failed);
  CHECK(read_back(state) == state);
}

TEST_CASE("deployment state: a scale deadline survives, and the read-back state carries on") {
  auto sim = SimDaemon(spec_of({service_spec("web", 1)}));
  sim.start();
  sim.behaviour["web"].becomes_ready = false;
  const auto request = sim.scale("web", 2);
  const DeploymentState& state = sim.core.state();
  REQUIRE(state.waiters.size() == 1);
  CHECK(state.waiters[0].deadline);
  CHECK(read_back(state) == state);
  Deployment resumed(read_back(state));  // the successor carries on where it was
  const auto fresh = resumed.state().services.at("web").replicas.at(1).serial;
  auto actions = resumed.handle({.kind = Event::Kind::ready, .replica = fresh}, sim.time.now(), 0);
  REQUIRE_FALSE(actions.empty());
  CHECK(actions.back().kind == Action::Kind::reply);
  CHECK(actions.back().request == request);
  CHECK(actions.back().ok);
}

TEST_CASE("deployment state: malformed documents are refused") {
  CHECK_FALSE(deployment_state_from_json(json::Value()));
  CHECK_FALSE(deployment_state_from_json(*json::parse(R"({"version": 2})")));
  auto good = to_json(initial_state(spec_of({service_spec("web", 1)})));
  CHECK(deployment_state_from_json(good));
  good["phase"] = 9;
  CHECK_FALSE(deployment_state_from_json(good));
  good["phase"] = "running";
  CHECK_FALSE(deployment_state_from_json(good));
}

TEST_CASE("deployment state: a quiescing replica of per-replica sockets survives the round trip") {
  auto web = service_spec("web", 2);
  web.listen = {{"127.0.0.1", 8000, "127.0.0.1:8000"}};
  web.sockets = SocketMode::per_replica;
  SimDaemon sim(spec_of({web}));
  sim.start();
  const auto leaving = sim.serials("web")[1];
  sim.queued_connections[leaving] = 1;
  sim.scale("web", 1);
  sim.empty_queue(leaving);  // in the grace: queue_empty is set
  const DeploymentState& state = sim.core.state();
  REQUIRE(state.services.at("web").replicas.at(1).machine.state == ReplicaState::quiescing);
  CHECK(state.services.at("web").replicas.at(1).machine.queue_empty);
  CHECK(state.services.at("web").replicas.at(1).policy.steered);
  CHECK(read_back(state) == state);
}
