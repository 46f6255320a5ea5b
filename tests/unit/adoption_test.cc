// Adopting the replicas of a crashed supervisor (core/adoption.h): which are taken over, and
// how the resumed core treats those that vanished (exit status unknown, restarted by policy).
#include "adoption.h"

#include <doctest/doctest.h>

#include "deployment_sim.h"

using namespace deployctl;
using namespace deployctl::sim;

namespace {

SimDaemon running_web(int replicas) {
  auto web = service_spec("web", replicas);
  web.replicas = replicas;
  SimDaemon sim(spec_of({web}));
  sim.start();
  return sim;
}

std::set<std::uint64_t> all_of(const SimDaemon& sim) {
  auto serials = sim.serials("web");
  return {serials.begin(), serials.end()};
}

}  // namespace

TEST_CASE("adoption: a settled deployment whose replicas all live is taken over as it was") {
  auto sim = running_web(3);
  auto plan = plan_adoption(sim.core.state(), true, all_of(sim));
  REQUIRE(plan.adopt);
  CHECK(plan.adopted == sim.serials("web"));
  CHECK(plan.vanished.empty());
  CHECK(plan.state == sim.core.state());
}

TEST_CASE("adoption: a replica that died meanwhile exits with an unknown status and restarts") {
  auto sim = running_web(2);
  const auto serials = sim.serials("web");
  auto plan = plan_adoption(sim.core.state(), true, {serials[0]});
  REQUIRE(plan.adopt);
  CHECK(plan.adopted == std::vector<std::uint64_t>{serials[0]});
  CHECK(plan.vanished == std::vector<std::uint64_t>{serials[1]});

  auto web = service_spec("web", 2);
  SimDaemon adopted(spec_of({web}));
  adopted.core = Deployment(plan.state);
  adopted.exit(serials[1], ExitStatus{.unknown = true});
  const auto& exit = adopted.replica("web", 1).last_exit;
  REQUIRE(exit);
  CHECK(exit->reason == ExitReason::adopted);
  CHECK(describe_exit(exit->status) == "exit status unknown");
  CHECK(std::string(reason_name(exit->reason)) == "adopted: exit status unknown");
  adopted.advance(std::chrono::seconds(5));
  CHECK(adopted.states("web") == std::vector<std::string>{"ready", "ready"});
  CHECK(adopted.replica("web", 1).machine.restarts == 1);
}

TEST_CASE("adoption: refused for another spec, a stopping deployment or a replica in flux") {
  auto sim = running_web(2);
  CHECK(plan_adoption(sim.core.state(), false, all_of(sim)).refusal ==
        "the spec differs from the one its supervisor ran");

  auto restarting = running_web(2);
  restarting.behaviour["web"].becomes_ready = false;
  restarting.restart();
  auto plan = plan_adoption(restarting.core.state(), true, all_of(restarting));
  CHECK_FALSE(plan.adopt);
  CHECK(plan.refusal.find("rolling restart of web") != std::string::npos);

  auto stopping = running_web(1);
  stopping.behaviour["web"].obeys_stop = false;
  stopping.down();
  plan = plan_adoption(stopping.core.state(), true, all_of(stopping));
  CHECK_FALSE(plan.adopt);
  CHECK(plan.refusal == "its supervisor died while the deployment was stopping");
}

TEST_CASE("adoption: replicas waiting to restart are re-armed, unanswered requests dropped") {
  auto sim = running_web(2);
  const auto serials = sim.serials("web");
  sim.behaviour["web"].exits_at_start = 1;  // its restarts crash: it waits in backoff
  sim.exit(serials[1], ExitStatus{.code = 1});
  const std::string waiting = sim.states("web")[1];
  REQUIRE((waiting == "backoff" || waiting == "crash_loop"));
  auto state = sim.core.state();
  state.waiters.push_back(Waiter{.request = 7});
  auto plan = plan_adoption(state, true, {serials[0]});
  REQUIRE(plan.adopt);
  CHECK(plan.rearm == std::vector<std::uint64_t>{serials[1]});
  CHECK(plan.state.waiters.empty());
  CHECK_FALSE(plan_adoption(state, true, {serials[0], serials[1]}).adopt);
}

TEST_CASE("adoption: unsettled_reason names exactly the states refused whatever is alive") {
  auto sim = running_web(1);
  CHECK(unsettled_reason(sim.core.state()).empty());
  sim.behaviour["web"].becomes_ready = false;
  sim.scale("web", 3);  // replicas starting one after another become ready: one state each
  std::vector<DeploymentState> states{sim.core.state()};
  const auto serials = sim.serials("web");
  for (std::size_t i = 1; i < serials.size(); ++i) {
    CHECK(unsettled_reason(states.back()).find("was starting") != std::string::npos);
    sim.feed({.kind = Event::Kind::ready, .replica = serials[i]});
    states.push_back(sim.core.state());
  }
  CHECK(unsettled_reason(states.back()).empty());  // the last `ready` settles it
  sim.behaviour["web"].obeys_stop = false;
  sim.down();
  states.push_back(sim.core.state());
  CHECK(unsettled_reason(states.back()) == "its supervisor died while the deployment was stopping");
  // Every unsettled state is refused with that reason for any alive set: which of them the
  // record holds does not change what a crash leads to (supervisor_crash.cc writes only one).
  const std::set<std::uint64_t> all(serials.begin(), serials.end());
  for (const auto& state : states) {
    const std::string why = unsettled_reason(state);
    for (const auto& alive : {std::set<std::uint64_t>{}, all}) {
      const auto plan = plan_adoption(state, true, alive);
      if (!why.empty()) {
        CHECK_FALSE(plan.adopt);
        CHECK(plan.refusal == why);
      }
    }
  }
  CHECK(plan_adoption(states[states.size() - 2], true, all).adopt);
}
