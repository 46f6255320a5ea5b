// Whole scenarios of the deployment core in simulated time (dinit-style): start, crashes,
// backoff, stop timeouts, rollouts, scale, reload, shutdown, memory recycle.
#include <doctest/doctest.h>

#include <algorithm>

#include "deployment_sim.h"

using namespace deployctl;
using namespace deployctl::sim;
using Strings = std::vector<std::string>;

namespace {

// A started deployment of `web` with `replicas` ready replicas.
SimDaemon running(int replicas = 2, ServiceSpec web = service_spec("web", 2)) {
  web.replicas = replicas;
  SimDaemon sim(spec_of({web}));
  sim.start();
  return sim;
}

Event reload_event(const Spec& before, const Spec& after) {
  Event event{.kind = Event::Kind::reload};
  event.diff = diff_specs(before, after);
  for (const auto& service : after.services) event.next.push_back(ServiceSettings::from(service));
  return event;
}

}  // namespace

TEST_SUITE("deployment scenarios") {
  TEST_CASE("start: every replica ready reports the deployment up with a summary") {
    auto web = service_spec("web", 2);
    web.listen = {{"127.0.0.1", 8000, "127.0.0.1:8000"}};
    SimDaemon sim(spec_of({web, service_spec("worker", 1)}));
    sim.start();
    REQUIRE(sim.started);
    CHECK(sim.started->ok);
    CHECK(sim.started->message == "demo is up in 0ms: web 2/2 on 127.0.0.1:8000, worker 1/1");
    CHECK(sim.core.state().phase == Phase::running);
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    for (const auto& [index, replica] : sim.service("web").replicas) {
      CHECK_FALSE(replica.machine.fail_fast);
    }
  }

  TEST_CASE("start: a replica without health checks is ready once it runs") {
    auto web = service_spec("web", 1);
    web.health.kind = HealthKind::none;
    SimDaemon sim(spec_of({web}));
    sim.behaviour["web"].becomes_ready = false;  // never says READY=1
    sim.start();
    CHECK(sim.states("web") == Strings{"ready"});
    CHECK(sim.started->ok);
  }

  TEST_CASE("exit -> immediate restart, then backoff, then restart after the delay") {
    auto sim = running(1);
    const auto first = sim.serials("web")[0];
    sim.exit(first, {.code = 1});
    CHECK(sim.states("web") == Strings{"ready"});  // the first restart after a good run: at once
    CHECK(sim.replica("web", 0).machine.restarts == 1);
    CHECK(sim.serials("web")[0] == first);  // the same slot, a new run
    sim.exit(first, {.code = 1});
    CHECK(sim.states("web") == Strings{"backoff"});
    sim.advance(99ms);
    CHECK(sim.states("web") == Strings{"backoff"});
    sim.advance(1ms);
    CHECK(sim.states("web") == Strings{"ready"});
    CHECK(sim.replica("web", 0).last_exit->status.code == 1);
    CHECK(sim.replica("web", 0).last_exit->stderr_tail == Strings{"boom"});
  }

  TEST_CASE("crash loop: entered after 3 restarts in the window, left by a run that lasts") {
    auto sim = running(1);
    const auto serial = sim.serials("web")[0];
    sim.exit(serial, {.code = 1});  // restart 1: at once
    sim.exit(serial, {.code = 1});  // restart 2: 100ms
    sim.advance(100ms);
    sim.exit(serial, {.code = 1});  // restart 3: crash loop, 200ms
    CHECK(sim.states("web") == Strings{"crash-loop"});
    sim.advance(199ms);
    CHECK(sim.states("web") == Strings{"crash-loop"});
    sim.advance(1ms);
    CHECK(sim.states("web") == Strings{"ready"});
    sim.advance(61s);  // a stable run: the failure count and the window reset
    sim.exit(serial, {.code = 1});
    CHECK(sim.states("web") == Strings{"ready"});
    CHECK(sim.replica("web", 0).machine.restarts == 4);
  }

  TEST_CASE("restart = never: an exit leaves the replica failed") {
    auto web = service_spec("web", 1);
    web.restart.policy = RestartPolicy::never;
    auto sim = running(1, web);
    sim.exit(sim.serials("web")[0], {.code = 2});
    CHECK(sim.states("web") == Strings{"failed"});
    sim.advance(10s);
    CHECK(sim.states("web") == Strings{"failed"});
  }

  TEST_CASE("down: stop -> stop.timeout -> SIGKILL, then finished and answered") {
    auto sim = running(1);
    sim.behaviour["web"].obeys_stop = false;
    const auto request = sim.down();
    CHECK(sim.core.state().phase == Phase::stopping);
    CHECK(sim.processes.begin()->second.signals == std::vector<int>{SIGTERM});
    sim.advance(4999ms);
    CHECK(sim.kills == 0);
    sim.advance(1ms);
    CHECK(sim.kills == 1);
    CHECK(sim.finished);
    REQUIRE(sim.replies.count(request));
    CHECK(sim.replies[request].ok);
    CHECK(sim.core.state().stopped_by_request);
    CHECK(sim.live_processes() == 0);
  }

  TEST_CASE("down while starting: the start is reported failed and the deployment stops") {
    SimDaemon sim(spec_of({service_spec("web", 2)}));
    sim.behaviour["web"].becomes_ready = false;
    sim.start();
    CHECK_FALSE(sim.started);
    const auto request = sim.down();
    CHECK(sim.finished);
    CHECK(sim.replies[request].ok);
    REQUIRE(sim.started);
    CHECK_FALSE(sim.started->ok);
    CHECK(sim.started->message == "the deployment stopped");
  }

  TEST_CASE("interrupt stops everything; a second one kills every replica at once") {
    auto sim = running(2);
    sim.behaviour["web"].obeys_stop = false;
    sim.interrupt();
    CHECK(sim.logged("SIGTERM received; stopping demo"));
    CHECK(sim.kills == 0);
    sim.interrupt();
    CHECK(sim.logged("received again; killing every replica now"));
    CHECK(sim.count(Action::Kind::force_kill) == 2);
    CHECK(sim.finished);
  }

  TEST_CASE("fail-fast during up: an exit before ready fails the start with its stderr") {
    SimDaemon sim(spec_of({service_spec("web", 2)}));
    sim.behaviour["web"].exits_at_start = 3;
    sim.start();
    REQUIRE(sim.started);
    CHECK_FALSE(sim.started->ok);
    CHECK(sim.started->message ==
          "web.0 failed to start: exited with code 3 before it became ready; last lines of its "
          "stderr:\n  web.0 | boom");
    CHECK(sim.core.state().exit_code == 1);
    CHECK(sim.finished);
    CHECK(sim.launcher.next_pid == 1002);  // nothing was restarted
  }

  TEST_CASE("fail-fast during up: a spawn failure fails the start with its cause") {
    SimDaemon sim(spec_of({service_spec("web", 1)}));
    sim.launcher.failing = true;
    sim.start();
    REQUIRE(sim.started);
    CHECK(sim.started->message ==
          "web.0 failed to start: cannot execute 'app': No such file or directory");
    CHECK(sim.finished);
  }

  TEST_CASE("fail-fast during up: spawn failures queued behind it still end the deployment") {
    SimDaemon sim(spec_of({service_spec("web", 3)}));
    sim.launcher.failing = true;  // every spawn's result is queued before the first is handled
    sim.start();
    REQUIRE(sim.started);
    CHECK_FALSE(sim.started->ok);
    CHECK(sim.finished);
  }

  TEST_CASE("fail-fast during up: not ready within health.start_period") {
    SimDaemon sim(spec_of({service_spec("web", 1)}));
    sim.behaviour["web"].becomes_ready = false;
    sim.start();
    sim.advance(1999ms);
    CHECK_FALSE(sim.started);
    sim.advance(1ms);
    REQUIRE(sim.started);
    CHECK(sim.started->message.find("(not ready within health.start_period)") != std::string::npos);
  }

  TEST_CASE("unhealthy and protocol errors replace the replica with the reason recorded") {
    auto sim = running(1);
    const auto serial = sim.serials("web")[0];
    sim.feed({.kind = Event::Kind::unhealthy, .replica = serial});
    CHECK(sim.states("web") == Strings{"ready"});  // stopped, exited on SIGTERM, restarted
    CHECK(sim.replica("web", 0).last_exit->reason == ExitReason::health);
    sim.feed({.kind = Event::Kind::protocol_error, .replica = serial});
    CHECK(sim.replica("web", 0).last_exit->reason == ExitReason::protocol);
  }

  TEST_CASE("scale up: answered once the new replicas are ready") {
    auto sim = running(1);
    sim.behaviour["web"].becomes_ready = false;
    const auto request = sim.scale("web", 3);
    CHECK(sim.count(Action::Kind::persist_scale) == 1);
    CHECK(sim.states("web") == Strings{"ready", "starting", "starting"});
    CHECK_FALSE(sim.replies.count(request));
    for (auto serial : sim.serials("web"))
      sim.feed({.kind = Event::Kind::ready, .replica = serial});
    REQUIRE(sim.replies.count(request));
    CHECK(sim.replies[request].ok);
  }

  TEST_CASE("scale down: the highest indexes drain; answered once they exited") {
    auto sim = running(3);
    sim.behaviour["web"].obeys_stop = false;
    const auto request = sim.scale("web", 1);
    CHECK(sim.states("web") == Strings{"ready", "draining", "draining"});
    CHECK(sim.logged("web.2: draining (scale to 1)"));
    CHECK_FALSE(sim.replies.count(request));
    sim.advance(5s);  // stop.timeout: SIGKILL
    CHECK(sim.states("web") == Strings{"ready"});
    CHECK(sim.replies[request].ok);
  }

  TEST_CASE("scale: refused while starting, for unknown services and out-of-range counts") {
    SimDaemon sim(spec_of({service_spec("web", 1)}));
    sim.behaviour["web"].becomes_ready = false;
    sim.start();
    auto early = sim.scale("web", 2);
    CHECK(sim.replies[early].message == "demo is still starting; scale it once it is running");
    sim.feed({.kind = Event::Kind::ready, .replica = sim.serials("web")[0]});
    auto unknown = sim.scale("db", 2);
    CHECK(sim.replies[unknown].code == ReplyCode::usage);
    CHECK(sim.replies[unknown].message == "no service 'db' in demo");
    auto huge = sim.scale("web", 1001);
    CHECK(sim.replies[huge].message == "replica count for 'web' must be 0..1000");
    CHECK(sim.service("web").desired == 1);
  }

  TEST_CASE("scale: a request deadline answers with a time-out") {
    auto sim = running(2);
    sim.behaviour["web"].obeys_stop = false;
    sim.behaviour["web"].unkillable = true;
    const auto request = sim.scale("web", 1);
    sim.advance(11999ms);  // start_period 2s + stop.timeout 5s + 5s
    CHECK_FALSE(sim.replies.count(request));
    sim.advance(1ms);
    REQUIRE(sim.replies.count(request));
    CHECK(sim.replies[request].message == "timed out waiting for web to reach 1 ready replicas");
  }

  TEST_CASE("restart: surge one new replica at a time, drain the old, answer ok") {
    auto sim = running(2);
    const auto old = sim.serials("web");
    const auto request = sim.restart();
    CHECK(sim.replies[request].ok);
    CHECK(sim.logged("web: rolling restart of 2 replicas (max_surge 1, max_unavailable 0)"));
    CHECK(sim.logged("web: rollout complete"));
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    for (auto serial : sim.serials("web")) {
      CHECK(std::find(old.begin(), old.end(), serial) == old.end());
    }
    CHECK(sim.service("web").generation == 1);
    CHECK(sim.service("web").replicas.begin()->second.generation == 1);
  }

  TEST_CASE("rollout whose new replica never becomes ready: old ones keep serving, error reply") {
    auto sim = running(2);
    const auto old = sim.serials("web");
    sim.behaviour["web"].becomes_ready = false;
    const auto request = sim.restart();
    CHECK(sim.states("web") == Strings{"ready", "ready", "starting"});  // max_surge 1
    sim.advance(2s);  // start_period: stopped, exits, counted as failed
    REQUIRE(sim.replies.count(request));
    CHECK_FALSE(sim.replies[request].ok);
    CHECK(sim.replies[request].message ==
          "web.2 did not become ready (code 0, start-timeout); the rollout of web stopped and the "
          "old replicas keep serving");
    CHECK(sim.serials("web") == old);
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    CHECK(sim.service("web").rollout->status == RolloutState::Status::failed);
  }

  TEST_CASE("failed rollout stops the other new replicas that are not ready") {
    auto web = service_spec("web", 2);
    web.rollout.max_surge = 2;
    auto sim = running(2, web);
    const auto old = sim.serials("web");
    sim.behaviour["web"].becomes_ready = false;
    sim.restart();
    CHECK(sim.states("web") == Strings{"ready", "ready", "starting", "starting"});
    sim.exit(sim.serials("web")[2], {.code = 7});
    CHECK(sim.serials("web") == old);
    CHECK(sim.live_processes() == 2);
    CHECK(sim.logged("web.2 did not become ready (code 7, exit)"));
    CHECK_FALSE(sim.logged("draining (scale to 2)"));  // stopped by the rule, not scaled away
  }

  TEST_CASE("scale and restart are refused during a rollout") {
    auto sim = running(2);
    sim.behaviour["web"].becomes_ready = false;
    sim.restart();
    auto scale = sim.scale("web", 4);
    CHECK(sim.replies[scale].message == "a rollout is in progress; scale once it is done");
    auto again = sim.restart();
    CHECK(sim.replies[again].message == "a rollout is already in progress");
    CHECK(sim.service("web").desired == 2);
  }

  TEST_CASE("reload that removes a service: it drains, then the reload is answered") {
    const Spec before = spec_of({service_spec("web", 1), service_spec("worker", 2)});
    const Spec after = spec_of({service_spec("web", 1)});
    SimDaemon sim(before);
    sim.start();
    sim.behaviour["worker"].obeys_stop = false;
    const auto request = sim.request(reload_event(before, after));
    CHECK(sim.logged("reload: removing service worker"));
    CHECK(sim.service("worker").removed);
    CHECK_FALSE(sim.replies.count(request));
    sim.advance(5s);
    CHECK(sim.replies[request].ok);
    CHECK(sim.service("worker").replicas.empty());
    sim.request(reload_event(after, after));  // the next reload forgets it
    CHECK(sim.core.state().services.count("worker") == 0);
  }

  TEST_CASE("reload rolls a changed service onto its new settings") {
    const Spec before = spec_of({service_spec("web", 2)});
    Spec after = before;
    after.services[0].stop.timeout = 9s;
    SimDaemon sim(before);
    sim.start();
    const auto request = sim.request(reload_event(before, after));
    CHECK(sim.logged("reload: web changed; rolling its replicas"));
    CHECK(sim.replies[request].ok);
    CHECK(sim.states("web") == Strings{"ready", "ready"});
    for (const auto& [index, replica] : sim.service("web").replicas) {
      CHECK(replica.policy.stop.timeout == 9s);
    }
  }

  TEST_CASE("reload adds a service and rescales another") {
    const Spec before = spec_of({service_spec("web", 1)});
    const Spec after = spec_of({service_spec("web", 3), service_spec("cache", 1)});
    SimDaemon sim(before);
    sim.start();
    const auto request = sim.request(reload_event(before, after));
    CHECK(sim.logged("reload: adding service cache"));
    CHECK(sim.logged("reload: web scales to 3"));
    CHECK(sim.replies[request].ok);
    CHECK(sim.states("web") == Strings{"ready", "ready", "ready"});
    CHECK(sim.states("cache") == Strings{"ready"});
  }

  TEST_CASE("reload while stopping is refused") {
    const Spec spec = spec_of({service_spec("web", 1)});
    SimDaemon sim(spec);
    sim.start();
    sim.behaviour["web"].obeys_stop = false;
    sim.interrupt();
    const auto request = sim.request(reload_event(spec, spec));
    CHECK(sim.replies[request].message == "the deployment stopped during the reload");
  }

  TEST_CASE("requests still waiting when the deployment stops are answered with an error") {
    auto sim = running(1);
    sim.behaviour["web"].becomes_ready = false;
    const auto scale = sim.scale("web", 2);
    const auto down = sim.down();
    CHECK(sim.replies[scale].message == "the deployment stopped");
    CHECK(sim.replies[down].ok);
  }

  TEST_CASE("memory recycle: a new replica first, then the old one drains") {
    auto sim = running(2);
    const auto old = sim.serials("web");
    sim.behaviour["web"].becomes_ready = false;
    sim.feed({.kind = Event::Kind::memory_high, .replica = old[1], .bytes = 1 << 30});
    CHECK(sim.count(Action::Kind::recycle_started) == 1);
    CHECK(sim.states("web") == Strings{"ready", "ready", "starting"});  // surge
    const auto fresh = sim.serials("web")[2];
    CHECK(sim.replica("web", 2).memory_restarts == 1);
    sim.feed({.kind = Event::Kind::ready, .replica = fresh});
    CHECK(sim.serials("web") == std::vector<std::uint64_t>{old[0], fresh});
    CHECK(sim.service("web").rollout->status == RolloutState::Status::done);
  }

  TEST_CASE("memory recycle whose replacement fails: the old replica keeps serving") {
    auto sim = running(1);
    const auto old = sim.serials("web")[0];
    sim.behaviour["web"].exits_at_start = 1;
    sim.feed({.kind = Event::Kind::memory_high, .replica = old});
    CHECK(sim.count(Action::Kind::recycle_gave_up) == 1);
    CHECK(sim.serials("web") == std::vector<std::uint64_t>{old});
    CHECK(sim.replica("web", 0).recycle == Recycle::gave_up);
    sim.feed({.kind = Event::Kind::memory_high, .replica = old});  // not again in this run
    CHECK(sim.count(Action::Kind::recycle_started) == 1);
  }

  TEST_CASE("memory recycle is not started while the deployment is starting") {
    SimDaemon sim(spec_of({service_spec("web", 2)}));
    sim.behaviour["web"].becomes_ready = false;
    sim.start();
    sim.feed({.kind = Event::Kind::ready, .replica = sim.serials("web")[0]});
    sim.feed({.kind = Event::Kind::memory_high, .replica = sim.serials("web")[0]});
    CHECK(sim.count(Action::Kind::recycle_started) == 0);
  }

  TEST_CASE("events of retired replicas are ignored") {
    auto sim = running(2);
    const auto gone = sim.serials("web")[1];
    sim.scale("web", 1);
    CHECK(sim.core.replica(gone) == nullptr);
    sim.feed({.kind = Event::Kind::ready, .replica = gone});
    sim.feed({.kind = Event::Kind::exited, .replica = gone});
    CHECK(sim.states("web") == Strings{"ready"});
  }

  // ---- issue 11 finding 1: a stop always finishes; nothing is spawned while stopping ----------

  TEST_CASE("scale, restart and down queued together: nothing starts after the stop, it ends") {
    auto sim = running(2);
    sim.behaviour["web"].becomes_ready = false;  // the new replicas are still starting
    const auto ids = sim.queued({{.kind = Event::Kind::scale, .counts = {{"web", 4}}},
                                 {.kind = Event::Kind::restart},
                                 {.kind = Event::Kind::down}});
    std::size_t stopping_at = 0;
    for (std::size_t i = 0; i < sim.performed.size(); ++i) {
      if (sim.performed[i].kind == Action::Kind::stopping) stopping_at = i;
    }
    REQUIRE(stopping_at > 0);
    for (std::size_t i = stopping_at; i < sim.performed.size(); ++i) {
      const auto& action = sim.performed[i];
      CHECK_FALSE(
          (action.kind == Action::Kind::replica && action.step.kind == ReplicaAction::Kind::spawn));
    }
    CHECK(sim.finished);
    CHECK(sim.live_processes() == 0);
    CHECK(sim.replies[ids[2]].ok);
    CHECK(sim.replies[ids[1]].message == "the deployment stopped during the rollout of web");
  }

  TEST_CASE("a replica in backoff when the stop comes is never spawned again") {
    auto sim = running(1);
    const auto serial = sim.serials("web")[0];
    sim.exit(serial, {.code = 1});
    sim.exit(serial, {.code = 1});
    REQUIRE(sim.states("web") == Strings{"backoff"});
    const int before = sim.spawns();
    sim.down();
    sim.advance(10s);
    CHECK(sim.spawns() == before);
    CHECK(sim.finished);
  }

  TEST_CASE("spawn failures during a stop end those replicas; none is started again") {
    auto sim = running(1);
    sim.launcher.failing = true;  // EMFILE before fork, say
    sim.behaviour["web"].obeys_stop = false;
    const auto ids = sim.queued(
        {{.kind = Event::Kind::scale, .counts = {{"web", 3}}}, {.kind = Event::Kind::down}});
    const int spawns = sim.spawns();
    sim.advance(5s);  // stop.timeout: SIGKILL for web.0
    CHECK(sim.spawns() == spawns);
    CHECK(sim.finished);
    CHECK(sim.replies[ids[1]].ok);
  }

  TEST_CASE("a second down re-sends the stop signal; a second interrupt still kills") {
    auto sim = running(2);
    sim.behaviour["web"].obeys_stop = false;
    sim.down();
    CHECK(sim.processes.begin()->second.signals == std::vector<int>{SIGTERM});
    sim.down();
    CHECK(sim.logged("down requested again; sending the stop signal again"));
    for (const auto& [serial, process] : sim.processes) {
      CHECK(process.signals == std::vector<int>{SIGTERM, SIGTERM});
    }
    sim.interrupt();  // the supervisor's first SIGTERM: the stop once more
    for (const auto& [serial, process] : sim.processes) CHECK(process.signals.size() == 3);
    CHECK(sim.kills == 0);
    sim.interrupt();  // the second: SIGKILL, as documented
    CHECK(sim.kills == 2);
    CHECK(sim.finished);
  }

  TEST_CASE("scale past the fd limit is refused naming the limit; the desired count stays") {
    auto sim = running(2);
    Event scale{.kind = Event::Kind::scale, .counts = {{"web", 1000}}};
    scale.fd_limit = 1024;
    const auto request = sim.request(scale);
    REQUIRE(sim.replies.count(request));
    CHECK(sim.replies[request].code == ReplyCode::failed);
    CHECK(sim.replies[request].message ==
          "scale web=1000 needs about 5066 file descriptors, but the supervisor's limit "
          "(RLIMIT_NOFILE) is 1024: raise the limit (ulimit -n as root, LimitNOFILE= in the "
          "systemd unit) or run fewer replicas");
    CHECK(sim.service("web").desired == 2);
    CHECK(sim.count(Action::Kind::persist_scale) == 0);
    scale.counts = {{"web", 100}};  // 65 + 1 + 100 * 5 fits
    const auto fits = sim.request(scale);
    CHECK(sim.replies[fits].ok);
    CHECK(sim.service("web").desired == 100);
  }

  // ---- issue 11 finding 9: services in file order --------------------------------------------

  TEST_CASE("services keep the spec's file order, through reloads") {
    const Spec before = spec_of({service_spec("zeta", 1), service_spec("alpha", 1)});
    SimDaemon sim(before);
    sim.start();
    CHECK(sim.started->message == "demo is up in 0ms: zeta 1/1, alpha 1/1");
    auto names = [&] {
      Strings out;
      for (const auto* service : in_file_order(sim.core.state())) {
        out.push_back(service->settings.name);
      }
      return out;
    };
    CHECK(names() == Strings{"zeta", "alpha"});
    sim.behaviour["zeta"].obeys_stop = false;
    const Spec after = spec_of({service_spec("mid", 1), service_spec("alpha", 1)});
    sim.request(reload_event(before, after));
    CHECK(names() == Strings{"mid", "alpha", "zeta"});  // zeta drains, listed last
    sim.advance(5s);
    sim.request(reload_event(after, after));
    CHECK(names() == Strings{"mid", "alpha"});
  }
}  // TEST_SUITE
