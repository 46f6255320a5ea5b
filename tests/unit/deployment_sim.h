// A simulated daemon for the deployment core's scenario tests: it performs the core's actions
// the way supervisor/daemon does, against fakes (FakeTime, FakeLauncher, scripted processes, a
// timer queue in simulated time), and feeds the results back through one event queue.
// Nothing here sleeps: advance() jumps the clock from one timer to the next.
#pragma once

#include <csignal>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "deployment.h"
#include "metrics_counters.h"
#include "seams.h"

namespace deployctl::sim {

using namespace std::chrono_literals;

class FakeTime final : public TimeSource {
 public:
  TimePoint now() const override { return now_; }
  void advance_to(TimePoint at) { now_ = at; }

 private:
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
};

// Fake pids from 1000; fails every launch while `failing` is set.
class FakeLauncher final : public ProcessLauncher {
 public:
  SpawnResult launch(const SpawnRequest&) override {
    if (failing) return {-1, 2, "cannot execute 'app': No such file or directory"};
    return {next_pid++, 0, ""};
  }
  bool failing = false;
  int next_pid = 1000;
};

// How the simulated processes of a service behave.
struct Behaviour {
  bool becomes_ready = true;          // sends READY=1 right after it runs
  std::optional<int> exits_at_start;  // exits with this code right after it runs
  bool obeys_stop = true;             // exits (code 0) on stop.signal or DRAIN=1
  bool unkillable = false;            // survives even SIGKILL (a process stuck in D state)
};

struct Process {
  int pid = -1;
  std::string service;
  bool alive = false;
  std::vector<int> signals;  // received, in order
};

inline ServiceSpec service_spec(const std::string& name, int replicas) {
  ServiceSpec spec;
  spec.name = name;
  spec.command = {"app"};
  spec.replicas = replicas;
  spec.restart.backoff = BackoffSpec{100ms, 1s, 10s, 0.0};
  spec.restart.crash_loop = CrashLoopSpec{3, 60s};
  spec.stop = StopSpec{SIGTERM, 5s};
  spec.health.start_period = 2s;
  return spec;
}

inline Spec spec_of(std::vector<ServiceSpec> services) {
  Spec spec;
  spec.name = "demo";
  spec.services = std::move(services);
  return spec;
}

class SimDaemon {
 public:
  explicit SimDaemon(const Spec& spec) : core(initial_state(spec)) {}

  FakeTime time;
  FakeLauncher launcher;
  Deployment core;
  std::map<std::string, Behaviour> behaviour;  // by service; default: well-behaved
  std::map<std::uint64_t, Process> processes;  // by replica serial, the current run
  std::vector<Action> performed;               // every action, in order
  DeploymentCounters counters;                 // what the metrics count, fed like the daemon's
  std::map<std::uint64_t, Action> replies;     // by request
  std::optional<Action> started;
  int kills = 0;  // SIGKILLs sent
  // Per-replica sockets: connections queued on a replica's own socket. A SteerAway reports
  // queue_empty at once when none are; else empty_queue() does.
  std::map<std::uint64_t, int> queued_connections;
  void empty_queue(std::uint64_t serial) {
    queued_connections[serial] = 0;
    feed({.kind = Event::Kind::queue_empty, .replica = serial});
  }
  bool finished = false;

  void feed(Event event) {
    queue_.push_back(std::move(event));
    run();
  }
  void start() { feed({.kind = Event::Kind::start}); }
  std::uint64_t request(Event event) {
    event.request = next_request_++;
    feed(std::move(event));
    return event.request;
  }
  // Queues every request before any is handled (as while the supervisor was SIGSTOPped), then
  // runs the queue; returns their request ids in order.
  std::vector<std::uint64_t> queued(std::vector<Event> events) {
    std::vector<std::uint64_t> ids;
    for (auto& event : events) {
      event.request = next_request_++;
      ids.push_back(event.request);
      queue_.push_back(std::move(event));
    }
    run();
    return ids;
  }
  int spawns() const {
    int n = 0;
    for (const auto& action : performed) {
      n += action.kind == Action::Kind::replica && action.step.kind == ReplicaAction::Kind::spawn;
    }
    return n;
  }
  std::uint64_t scale(const std::string& service, long long count) {
    return request({.kind = Event::Kind::scale, .counts = {{service, count}}});
  }
  std::uint64_t restart(std::vector<std::string> services = {}) {
    return request({.kind = Event::Kind::restart, .services = std::move(services)});
  }
  std::uint64_t down() { return request({.kind = Event::Kind::down}); }
  void interrupt() { feed({.kind = Event::Kind::interrupt, .message = "SIGTERM"}); }

  // Moves simulated time forward by `span`, firing timers and deadlines in time order.
  void advance(Duration span) {
    const TimePoint end = time.now() + span;
    for (auto next = next_timer(end); next; next = next_timer(end)) {
      time.advance_to(next->first);
      fire(next->second);
    }
    time.advance_to(end);
  }

  // The replica's process exits (a crash, or the end of a stop).
  void exit(std::uint64_t serial, ExitStatus status) {
    processes[serial].alive = false;
    feed({.kind = Event::Kind::exited,
          .replica = serial,
          .status = status,
          .stderr_tail = {"boom"}});
  }

  const ServiceState& service(const std::string& name) const {
    return core.state().services.at(name);
  }
  std::vector<std::string> states(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& [index, replica] : service(name).replicas) {
      out.push_back(state_name(replica.machine.state));
    }
    return out;
  }
  std::vector<std::uint64_t> serials(const std::string& name) const {
    std::vector<std::uint64_t> out;
    for (const auto& [index, replica] : service(name).replicas) out.push_back(replica.serial);
    return out;
  }
  const ReplicaRecord& replica(const std::string& name, int index) const {
    return service(name).replicas.at(index);
  }
  bool logged(const std::string& text) const {
    for (const auto& action : performed) {
      if (action.kind == Action::Kind::log && action.message.find(text) != std::string::npos) {
        return true;
      }
    }
    return false;
  }
  int count(Action::Kind kind) const {
    int n = 0;
    for (const auto& action : performed) n += action.kind == kind;
    return n;
  }
  int live_processes() const {
    int n = 0;
    for (const auto& [serial, process] : processes) n += process.alive;
    return n;
  }

 private:
  struct Timer {
    std::uint64_t serial = 0;  // 0: a request deadline
    std::uint64_t generation = 0;
  };

  void run() {
    while (!queue_.empty()) {
      Event event = std::move(queue_.front());
      queue_.pop_front();
      const auto actions = core.handle(event, time.now(), 0.5);
      for (const auto& action : actions) perform(action);
      counters.observe(actions, core, time.now());
    }
  }

  void perform(const Action& action) {
    performed.push_back(action);
    switch (action.kind) {
      case Action::Kind::replica:
        step(action.replica, action.step);
        break;
      case Action::Kind::force_kill:
        signal(action.replica, SIGKILL);
        break;
      case Action::Kind::reply:
        replies[action.request] = action;
        break;
      case Action::Kind::started:
        started = action;
        break;
      case Action::Kind::finished:
        finished = true;
        break;
      case Action::Kind::arm_deadline:
        timers_.push_back({action.at, {}});
        break;
      default:
        break;
    }
  }

  void step(std::uint64_t serial, const ReplicaAction& step) {
    switch (step.kind) {
      case ReplicaAction::Kind::spawn:
        spawn(serial);
        break;
      case ReplicaAction::Kind::signal:
        signal(serial, step.signal);
        break;
      case ReplicaAction::Kind::kill:
        signal(serial, SIGKILL);
        break;
      case ReplicaAction::Kind::send_drain:
        signal(serial, SIGTERM);
        break;
      case ReplicaAction::Kind::arm_timer:
        timers_.push_back({time.now() + step.delay, {serial, ++generation_[serial]}});
        break;
      case ReplicaAction::Kind::cancel_timer:
        ++generation_[serial];
        break;
      case ReplicaAction::Kind::steer_away:
        if (queued_connections[serial] == 0) {
          queue_.push_back({.kind = Event::Kind::queue_empty, .replica = serial});
        }
        break;
      default:
        break;
    }
  }

  void spawn(std::uint64_t serial) {
    const ServiceState* owner = core.service_of(serial);
    const Behaviour how = behaviour[owner->settings.name];
    auto result = launcher.launch({});
    if (result.pid < 0) {
      queue_.push_back(
          {.kind = Event::Kind::spawn_failed, .replica = serial, .message = result.message});
      return;
    }
    processes[serial] = {result.pid, owner->settings.name, true, {}};
    queue_.push_back({.kind = Event::Kind::spawned, .replica = serial});
    if (how.exits_at_start) {
      processes[serial].alive = false;
      queue_.push_back({.kind = Event::Kind::exited,
                        .replica = serial,
                        .status = {.code = *how.exits_at_start},
                        .stderr_tail = {"boom"}});
    } else if (how.becomes_ready) {
      queue_.push_back({.kind = Event::Kind::ready, .replica = serial});
    }
  }

  void signal(std::uint64_t serial, int number) {
    auto it = processes.find(serial);
    if (it == processes.end() || !it->second.alive) return;
    Process& process = it->second;
    process.signals.push_back(number);
    const Behaviour how = behaviour[process.service];
    if (number == SIGKILL) ++kills;
    if ((number == SIGKILL && !how.unkillable) || (number != SIGKILL && how.obeys_stop)) {
      process.alive = false;
      ExitStatus status;
      if (number == SIGKILL)
        status.signal = SIGKILL;
      else
        status.code = 0;
      queue_.push_back({.kind = Event::Kind::exited, .replica = serial, .status = status});
    }
  }

  // The earliest timer due by `end`, taken off the queue.
  std::optional<std::pair<TimePoint, Timer>> next_timer(TimePoint end) {
    auto best = timers_.end();
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (best == timers_.end() || it->first < best->first) best = it;
    }
    if (best == timers_.end() || best->first > end) return std::nullopt;
    auto next = *best;
    timers_.erase(best);
    return next;
  }

  void fire(const Timer& timer) {
    if (!timer.serial) {
      feed({.kind = Event::Kind::tick});
    } else if (generation_[timer.serial] == timer.generation) {
      feed({.kind = Event::Kind::timer, .replica = timer.serial});
    }
  }

  std::deque<Event> queue_;
  std::vector<std::pair<TimePoint, Timer>> timers_;
  std::map<std::uint64_t, std::uint64_t> generation_;
  std::uint64_t next_request_ = 1;
};

}  // namespace deployctl::sim
