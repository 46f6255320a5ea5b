// Scenarios of the deployment core for TLS certificate rotation (Event::cert_changed),
// in simulated time: the same rolling replacement as `restart`, without a request.
#include <doctest/doctest.h>

#include <algorithm>

#include "deployment_sim.h"

using namespace deployctl;
using namespace deployctl::sim;
using Strings = std::vector<std::string>;

namespace {

SimDaemon running_web(int replicas) {
  auto web = service_spec("web", replicas);
  SimDaemon sim(spec_of({web, service_spec("api", 1)}));
  sim.start();
  return sim;
}

bool none_of(const std::vector<std::uint64_t>& now, const std::vector<std::uint64_t>& old) {
  return std::none_of(now.begin(), now.end(), [&](auto serial) {
    return std::find(old.begin(), old.end(), serial) != old.end();
  });
}

Event changed(Strings services) {
  return {.kind = Event::Kind::cert_changed, .services = std::move(services)};
}

}  // namespace

TEST_SUITE("deployment scenarios: certificates") {
  TEST_CASE("a changed certificate rolls every replica of that service only, within bounds") {
    auto sim = running_web(2);
    const auto old = sim.serials("web");
    const auto api = sim.serials("api");
    sim.feed(changed({"web"}));
    CHECK(sim.logged(
        "web: new certificate: rolling restart of 2 replicas (max_surge 1, max_unavailable 0)"));
    CHECK(sim.logged("web: rollout complete"));
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    CHECK(none_of(sim.serials("web"), old));
    CHECK(sim.serials("api") == api);
    CHECK(sim.service("web").generation == 1);
  }

  TEST_CASE("new replicas that fail on the new certificate stop the roll; old ones serve") {
    auto sim = running_web(2);
    const auto old = sim.serials("web");
    sim.behaviour["web"].becomes_ready = false;
    sim.feed(changed({"web"}));
    CHECK(sim.states("web") == Strings{"ready", "ready", "starting"});  // surge first
    sim.exit(sim.serials("web")[2], {.code = 1});
    CHECK(sim.serials("web") == old);
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    CHECK(sim.service("web").rollout->status == RolloutState::Status::failed);
  }

  TEST_CASE("a change during a rollout restarts it toward the newest files") {
    auto sim = running_web(2);
    const auto old = sim.serials("web");
    sim.behaviour["web"].becomes_ready = false;  // hold the first rollout mid-way
    sim.feed(changed({"web"}));
    REQUIRE(sim.states("web") == Strings{"ready", "ready", "starting"});
    const auto held = sim.serials("web")[2];
    sim.behaviour["web"].becomes_ready = true;
    sim.feed(changed({"web"}));
    CHECK(sim.service("web").generation == 2);
    sim.advance(3s);
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    for (const auto& [index, replica] : sim.service("web").replicas) {
      CHECK(replica.generation == 2);
    }
    CHECK(none_of(sim.serials("web"), old));
    CHECK(none_of(sim.serials("web"), {held}));
  }

  TEST_CASE("while starting, and for unknown services, nothing is rolled") {
    auto web = service_spec("web", 1);
    SimDaemon sim(spec_of({web}));
    sim.behaviour["web"].becomes_ready = false;
    sim.start();
    sim.feed(changed({"web", "nope"}));
    CHECK(sim.logged("web: the certificate changed while starting; not rolled"));
    CHECK(sim.service("web").generation == 0);
  }
}
