#include "deployment.h"

#include <algorithm>

#include "rollout.h"
#include "scale_planner.h"

namespace deployctl {

using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

namespace {

long long ms_between(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

ReplicaEvent::Kind machine_event(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::ready:
      return Kind::ready;
    case Event::Kind::unhealthy:
      return Kind::unhealthy;
    case Event::Kind::protocol_error:
      return Kind::protocol_error;
    case Event::Kind::queue_empty:
      return Kind::queue_empty;
    default:
      return Kind::timer;
  }
}

}  // namespace

std::vector<Action> Deployment::handle(const Event& event, TimePoint now, double random01) {
  now_ = now;
  random01_ = random01;
  out_.clear();
  if (s_.phase == Phase::finished) return {};
  using E = Event::Kind;
  // clang-format off
  switch (event.kind) {
    case E::start: start(); break;
    case E::scale: scale(event); break;
    case E::restart: restart(event); break;
    case E::reload: reload(event); break;
    case E::down: down(event); break;
    case E::interrupt: interrupt(event); break;
    case E::memory_high: memory_high(event); break;
    case E::cert_changed: certificate_changed(event); break;
    case E::tick: break;
    default: on_replica_event(event); break;
  }
  // clang-format on
  after_event();
  return std::move(out_);
}

void Deployment::start() {
  s_.started_at = now_;
  for (auto& [name, service] : s_.services) apply_scale(service);
}

void Deployment::on_replica_event(const Event& event) {
  auto [service, replica] = find(event.replica);
  if (!replica) return;  // retired since the event was queued
  switch (event.kind) {
    case Event::Kind::spawned:
      replica->spawn_error.clear();
      replica_event(*service, *replica, {Kind::spawned});
      // Without health checks there is no readiness signal to wait for: running is ready.
      if (replica->ready_when_running) replica_event(*service, *replica, {Kind::ready});
      break;
    case Event::Kind::spawn_failed:
      replica->spawn_error = event.message;
      replica_event(*service, *replica, {Kind::spawn_failed}, {event.message});
      break;
    case Event::Kind::exited:
      if (event.out_of_memory) ++replica->memory_restarts;
      replica_event(*service, *replica, {Kind::exited, event.status, event.out_of_memory},
                    event.stderr_tail);
      break;
    default:  // ready, unhealthy, protocol_error, timer, queue_empty: the machine's events
      replica_event(*service, *replica, {machine_event(event.kind)});
      break;
  }
}

// Runs the replica's machine on `event`; may erase `replica` (retire).
void Deployment::replica_event(ServiceState& service, ReplicaRecord& replica, ReplicaEvent event,
                               std::vector<std::string> tail) {
  ReplicaMachine machine(replica.policy, replica.machine);
  const ReplicaState before = replica.machine.state;
  auto steps = machine.handle(event, now_, random01_);
  replica.machine = machine.saved();
  if (replica.machine.state != before) {
    Action transition{.kind = Action::Kind::transition, .replica = replica.serial};
    transition.before = before;
    transition.after = replica.machine.state;
    transition.event = event;
    transition.steps = steps;
    out_.push_back(std::move(transition));
  }
  bool retired = false;
  for (const auto& step : steps) {
    switch (step.kind) {
      case Act::record_exit:
        replica.last_exit = ExitRecord{step.status, step.reason, now_, tail};
        break;
      case Act::start_failed:
        s_.failed_start = replica.serial;  // handled once this event is done
        continue;
      case Act::spawn:
        if (replica.recycle == Recycle::gave_up) replica.recycle = Recycle::no;
        break;
      case Act::retire:
        retired = true;
        break;
      default:
        break;
    }
    out_.push_back({.kind = Action::Kind::replica, .replica = replica.serial, .step = step});
  }
  if (retired) service.replicas.erase(replica.index);
}

ReplicaRecord& Deployment::add_replica(ServiceState& service, int index) {
  ReplicaRecord replica;
  replica.serial = s_.next_serial++;
  replica.index = index;
  replica.id = service.settings.name + "." + std::to_string(index);
  replica.generation = service.generation;
  replica.policy = service.settings.policy;
  replica.ready_when_running = service.settings.ready_when_running;
  replica.machine.fail_fast = s_.phase == Phase::starting;
  return service.replicas[index] = std::move(replica);
}

// Nothing is started once the deployment stops: a scale or rollout decided before the stop
// (or queued behind it) only drains.
void Deployment::apply_scale(ServiceState& service) {
  if (s_.phase == Phase::stopping) return;
  std::vector<SlotView> slots;
  for (const auto& [index, replica] : service.replicas) {
    slots.push_back({index, is_retiring(replica.machine.state)});
  }
  ScalePlan plan = plan_scale(slots, service.desired);
  for (int index : plan.drain) {
    auto& replica = service.replicas.at(index);
    log(LogLevel::info,
        replica.id + ": draining (scale to " + std::to_string(service.desired) + ")");
    replica_event(service, replica, {Kind::drain});
  }
  for (int index : plan.start) replica_event(service, add_replica(service, index), {Kind::start});
}

// After every event: rollouts move until they stop moving, then the start, the waiting
// requests and the shutdown are checked.
void Deployment::after_event() {
  for (auto& [name, service] : s_.services) {
    while (advance_rollout(name, service)) {
    }
    check_recycles(service);
  }
  if (s_.failed_start) fail_start(*std::exchange(s_.failed_start, std::nullopt));
  check_started();
  check_waiters();
  check_finished();
}

// One step of the service's rollout; true if it started, drained or stopped something (the
// plan is then made again: each step only moves toward the bounds, so this ends).
bool Deployment::advance_rollout(const std::string& name, ServiceState& service) {
  auto& rollout = service.rollout;
  if (!rollout || rollout->status != RolloutState::Status::running) return false;
  if (s_.phase == Phase::stopping) {  // never starts a replica while stopping
    close_rollout(name, service, "the deployment stopped during the rollout of " + name);
    return false;
  }
  std::vector<RolloutSlot> slots;
  const ReplicaRecord* failed = nullptr;
  for (const auto& [index, replica] : service.replicas) {
    const bool old = replica.generation < service.generation || replica.recycle == Recycle::running;
    const bool start_failed = !old && !replica.machine.ever_ready && replica.last_exit;
    if (start_failed) failed = &replica;
    slots.push_back({index, old, replica.machine.state == ReplicaState::ready,
                     is_retiring(replica.machine.state), start_failed});
  }
  RolloutStep step = plan_rollout(slots, service.desired, service.settings.rollout);
  if (step.status == RolloutStep::Status::done) {
    close_rollout(name, service);
    log(LogLevel::info, name + ": rollout complete");
    return false;
  }
  if (step.status == RolloutStep::Status::failed) {
    fail_rollout(name, service, *failed);
    return false;
  }
  for (int index : step.drain) {
    auto& replica = service.replicas.at(index);
    log(LogLevel::info, replica.id + ": draining (replaced by the rollout)");
    replica_event(service, replica, {Kind::drain});
  }
  for (int i = 0; i < step.start; ++i) {
    int index = 0;
    while (service.replicas.count(index)) ++index;
    auto& fresh = add_replica(service, index);
    if (!service.memory_carry.empty()) {  // a memory recycle's successor inherits its count
      fresh.memory_restarts = service.memory_carry.front();
      service.memory_carry.erase(service.memory_carry.begin());
    }
    replica_event(service, fresh, {Kind::start});
  }
  return !step.drain.empty() || step.start > 0;
}

// The failed-rollout rule: the new replicas that are not ready stop, the service goes back to
// its desired count keeping the lowest indexes (the old replicas), and the rollout reports why.
void Deployment::fail_rollout(const std::string& name, ServiceState& service,
                              const ReplicaRecord& failed) {
  const auto& exit = *failed.last_exit;
  close_rollout(name, service,
                failed.id + " did not become ready (" + describe_exit(exit.status) + ", " +
                    reason_name(exit.reason) + "); the rollout of " + name +
                    " stopped and the old replicas keep serving");
  log(LogLevel::error, service.rollout->error);
  for (auto it = service.replicas.begin(); it != service.replicas.end();) {
    auto& replica = (it++)->second;  // stopping may retire (erase) it
    const bool old = replica.generation < service.generation;
    if (!old && replica.machine.state != ReplicaState::ready) {
      replica_event(service, replica, {Kind::stop});
    }
  }
  apply_scale(service);
}

// A memory recycle whose rollout ended with the replica still serving: its replacement did not
// become ready.
void Deployment::check_recycles(ServiceState& service) {
  if (service.rollout && service.rollout->status == RolloutState::Status::running) return;
  for (auto& [index, replica] : service.replicas) {
    if (replica.recycle != Recycle::running || is_retiring(replica.machine.state)) continue;
    replica.recycle = Recycle::gave_up;
    service.memory_carry.clear();
    out_.push_back({.kind = Action::Kind::recycle_gave_up, .replica = replica.serial});
  }
}

void Deployment::memory_high(const Event& event) {
  auto [service, replica] = find(event.replica);
  if (!replica || replica->recycle != Recycle::no || s_.phase != Phase::running ||
      replica->machine.state != ReplicaState::ready || service->removed) {
    return;
  }
  replica->recycle = Recycle::running;
  service->memory_carry.push_back(replica->memory_restarts + 1);
  Action started{.kind = Action::Kind::recycle_started, .replica = replica->serial};
  started.bytes = event.bytes;
  out_.push_back(std::move(started));
  open_rollout(service->settings.name, *service);
}

void Deployment::open_rollout(const std::string& name, ServiceState& service) {
  const bool rolling = service.rollout && service.rollout->status == RolloutState::Status::running;
  service.rollout.emplace();
  if (!rolling) out_.push_back({.kind = Action::Kind::rollout_started, .service = name});
}

void Deployment::close_rollout(const std::string& name, ServiceState& service,
                               std::string error) {
  auto& rollout = *service.rollout;
  rollout.status = error.empty() ? RolloutState::Status::done : RolloutState::Status::failed;
  rollout.error = std::move(error);
  Action ended{.kind = Action::Kind::rollout_ended, .service = name};
  ended.ok = rollout.error.empty();
  ended.message = rollout.error;
  out_.push_back(std::move(ended));
}

void Deployment::check_started() {
  if (s_.phase != Phase::starting) return;
  std::string summary;
  for (const ServiceState* service : in_file_order(s_)) {
    const int ready = ready_count(*service);
    if (ready < service->desired) return;
    summary += (summary.empty() ? "" : ", ") + service->settings.name + " " +
               std::to_string(ready) + "/" + std::to_string(service->desired);
    for (const auto& address : service->settings.listen) summary += " on " + address;
  }
  s_.phase = Phase::running;
  for (auto& [name, service] : s_.services) {
    for (auto& [index, replica] : service.replicas) replica.machine.fail_fast = false;
  }
  std::string message =
      s_.name + " is up in " + std::to_string(ms_between(s_.started_at, now_)) + "ms: " + summary;
  log(LogLevel::info, message);
  s_.start_reported = true;
  out_.push_back({.kind = Action::Kind::started, .ok = true, .message = message});
}

void Deployment::fail_start(std::uint64_t serial) {
  auto [service, replica] = find(serial);
  if (s_.phase != Phase::starting || !replica) return;
  std::string message = replica->id + " failed to start: ";
  const auto& exit = replica->last_exit;
  if (!replica->spawn_error.empty()) {
    message += replica->spawn_error;
  } else if (exit) {
    message += std::string("exited with ") + describe_exit(exit->status) +
               " before it became ready";
    if (exit->reason == ExitReason::start_timeout) {
      message += " (not ready within health.start_period)";
    }
    if (!exit->stderr_tail.empty()) {
      message += "; last lines of its stderr:";
      for (const auto& line : exit->stderr_tail) message += "\n  " + replica->id + " | " + line;
    }
  }
  log(LogLevel::error, message);
  s_.exit_code = 1;
  if (!std::exchange(s_.start_reported, true)) {
    out_.push_back({.kind = Action::Kind::started, .ok = false, .message = message});
  }
  begin_shutdown();
}

void Deployment::interrupt(const Event& event) {
  if (++s_.interrupts == 1) {
    log(LogLevel::info, event.message + " received; stopping " + s_.name);
    begin_shutdown();
    return;
  }
  log(LogLevel::warn, event.message + " received again; killing every replica now");
  for (const auto& [name, service] : s_.services) {
    for (const auto& [index, replica] : service.replicas) {
      out_.push_back({.kind = Action::Kind::force_kill, .replica = replica.serial});
    }
  }
}

void Deployment::begin_shutdown() {
  if (s_.phase == Phase::stopping) return resend_stop();
  s_.phase = Phase::stopping;
  out_.push_back({.kind = Action::Kind::stopping});
  for (auto& [name, service] : s_.services) {
    for (auto it = service.replicas.begin(); it != service.replicas.end();) {
      auto& replica = (it++)->second;  // stopping may retire (erase) it
      replica_event(service, replica, {Kind::stop});
    }
  }
}

// A second `down` (or a stop after a failed start) while stopping: every replica that still
// has a process gets its stop.signal again (its process group, as the first time); the
// stop.timeout armed the first time still ends in SIGKILL.
void Deployment::resend_stop() {
  for (const auto& [name, service] : s_.services) {
    for (const auto& [index, replica] : service.replicas) {
      if (!ReplicaMachine(replica.policy, replica.machine).running()) continue;
      const ReplicaAction again{.kind = ReplicaAction::Kind::signal,
                                .signal = replica.policy.stop.signal};
      out_.push_back({.kind = Action::Kind::replica, .replica = replica.serial, .step = again});
    }
  }
}

void Deployment::check_finished() {
  if (s_.phase != Phase::stopping) return;
  for (const auto& [name, service] : s_.services) {
    if (!service.replicas.empty()) return;
  }
  s_.phase = Phase::finished;
  out_.push_back({.kind = Action::Kind::finished});
  for (const auto& waiter : s_.waiters) {
    if (waiter.kind == Waiter::Kind::down) reply(waiter.request, ReplyCode::ok, "");
  }
  for (const auto& waiter : s_.waiters) {
    if (waiter.kind != Waiter::Kind::down) {
      reply(waiter.request, ReplyCode::failed, "the deployment stopped");
    }
  }
  s_.waiters.clear();
  if (!std::exchange(s_.start_reported, true)) {
    out_.push_back(
        {.kind = Action::Kind::started, .ok = false, .message = "the deployment stopped"});
  }
}

void Deployment::check_waiters() {
  for (auto it = s_.waiters.begin(); it != s_.waiters.end();) {
    if (auto response = answer(*it)) {
      out_.push_back(std::move(*response));
      it = s_.waiters.erase(it);
    } else {
      ++it;
    }
  }
}

std::pair<ServiceState*, ReplicaRecord*> Deployment::find(std::uint64_t serial) {
  for (auto& [name, service] : s_.services) {
    for (auto& [index, replica] : service.replicas) {
      if (replica.serial == serial) return {&service, &replica};
    }
  }
  return {nullptr, nullptr};
}

const ReplicaRecord* Deployment::replica(std::uint64_t serial) const {
  return const_cast<Deployment*>(this)->find(serial).second;
}

const ServiceState* Deployment::service_of(std::uint64_t serial) const {
  return const_cast<Deployment*>(this)->find(serial).first;
}

bool Deployment::rollout_running() const {
  for (const auto& [name, service] : s_.services) {
    if (service.rollout && service.rollout->status == RolloutState::Status::running) return true;
  }
  return false;
}

void Deployment::log(LogLevel level, std::string message) {
  out_.push_back({.kind = Action::Kind::log, .message = std::move(message), .level = level});
}

void Deployment::reply(std::uint64_t request, ReplyCode code, std::string message) {
  out_.push_back(reply_action(request, code, std::move(message)));
}

Action reply_action(std::uint64_t request, ReplyCode code, std::string message) {
  return {.kind = Action::Kind::reply,
          .request = request,
          .ok = code == ReplyCode::ok,
          .code = code,
          .message = std::move(message)};
}

}  // namespace deployctl
