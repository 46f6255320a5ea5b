#include "replica_machine.h"

#include <algorithm>

#include "load.h"

namespace deployctl {

using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

const char* state_name(ReplicaState state) {
  switch (state) {
    case ReplicaState::stopped: return "stopped";
    case ReplicaState::starting: return "starting";
    case ReplicaState::ready: return "ready";
    case ReplicaState::unhealthy: return "unhealthy";
    case ReplicaState::draining: return "draining";
    case ReplicaState::stopping: return "stopping";
    case ReplicaState::backoff: return "backoff";
    case ReplicaState::crash_loop: return "crash-loop";
    case ReplicaState::failed: return "failed";
    case ReplicaState::quiescing: return "quiescing";
  }
  return "?";
}

const char* reason_name(ExitReason reason) {
  switch (reason) {
    case ExitReason::exit: return "exit";
    case ExitReason::signal: return "signal";
    case ExitReason::health: return "health";
    case ExitReason::start_timeout: return "start-timeout";
    case ExitReason::protocol: return "protocol";
    case ExitReason::exec: return "exec";
    case ExitReason::stop: return "stop";
    case ExitReason::oom: return "oom";
    case ExitReason::adopted: return "adopted: exit status unknown";
  }
  return "?";
}

std::string to_string(const ReplicaAction& action) {
  switch (action.kind) {
    case Act::spawn: return "Spawn";
    case Act::signal: return "Signal(" + std::to_string(action.signal) + ")";
    case Act::kill: return "Kill";
    case Act::send_drain: return "SendDrain";
    case Act::arm_timer: return "ArmTimer(" + std::to_string(action.delay.count()) + "ms)";
    case Act::cancel_timer: return "CancelTimer";
    case Act::start_health: return "StartHealth";
    case Act::record_exit: return std::string("RecordExit(") + reason_name(action.reason) + ")";
    case Act::start_failed: return "StartFailed";
    case Act::retire: return "Retire";
    case Act::steer_away: return "SteerAway";
  }
  return "?";
}

ReplicaPolicy ReplicaPolicy::from(const ServiceSpec& service) {
  ReplicaPolicy policy{service.restart, service.stop, service.health.start_period};
  if (service.sockets == SocketMode::per_replica) {
    policy.steered = true;
    policy.quiesce_limit = std::min(service.stop.timeout, Duration{5000});
    policy.quiesce_grace = std::min(service.stop.timeout / 4, Duration{1000});
  }
  return policy;
}

bool ReplicaMachine::running() const {
  switch (s_.state) {
    case ReplicaState::starting:
    case ReplicaState::ready:
    case ReplicaState::unhealthy:
    case ReplicaState::draining:
    case ReplicaState::stopping:
    case ReplicaState::quiescing:
      return true;
    default:
      return false;
  }
}

ReplicaMachine::Actions ReplicaMachine::spawn(TimePoint now) {
  s_.state = ReplicaState::starting;
  s_.pending_reason.reset();
  s_.started_at = now;
  return {{Act::spawn}};
}

ReplicaMachine::Actions ReplicaMachine::begin_stop(ReplicaState next, ExitReason reason) {
  s_.state = next;
  s_.pending_reason = reason;
  return {{.kind = Act::signal, .signal = policy_.stop.signal},
          {.kind = Act::arm_timer, .delay = policy_.stop.timeout}};
}

ReplicaMachine::Actions ReplicaMachine::begin_drain() {
  s_.state = ReplicaState::draining;
  s_.pending_reason = ExitReason::stop;
  return {{Act::send_drain}, {.kind = Act::arm_timer, .delay = policy_.stop.timeout}};
}

// Quiescing: a timer ends it (the limit, or the grace after the queue emptied).
ReplicaMachine::Actions ReplicaMachine::quiesce(const ReplicaEvent& event) {
  if (event.kind == Kind::timer) return begin_drain();
  if (s_.queue_empty) return {};  // queue_empty: the grace already runs
  s_.queue_empty = true;
  return {{Act::cancel_timer}, {.kind = Act::arm_timer, .delay = policy_.quiesce_grace}};
}

ReplicaMachine::Actions ReplicaMachine::on_exit(ExitStatus status, bool out_of_memory,
                                                TimePoint now, double random01) {
  ExitReason reason = s_.pending_reason ? *s_.pending_reason
                      : out_of_memory ? ExitReason::oom
                      : status.signal ? ExitReason::signal
                      : status.code   ? ExitReason::exit
                      : status.unknown ? ExitReason::adopted
                                      : ExitReason::exec;
  Actions actions{{Act::cancel_timer}, {.kind = Act::record_exit, .reason = reason, .status = status}};

  if (retiring()) {
    s_.state = ReplicaState::stopped;
    actions.push_back({Act::retire});
    return actions;
  }
  if (s_.fail_fast && !s_.ever_ready) {
    s_.state = ReplicaState::failed;
    actions.push_back({Act::start_failed});
    return actions;
  }
  bool clean_exit = reason == ExitReason::exit && status.code == 0;
  RestartPolicy policy = policy_.restart.policy;
  if (policy == RestartPolicy::never || (policy == RestartPolicy::on_failure && clean_exit)) {
    s_.state = clean_exit ? ReplicaState::stopped : ReplicaState::failed;
    return actions;
  }
  RestartBackoff backoff(policy_.restart.backoff, policy_.restart.crash_loop, s_.backoff);
  auto decision = backoff.on_exit(s_.started_at, now, random01);
  s_.backoff = backoff.state();
  ++s_.restarts;
  if (decision.delay.count() == 0 && !decision.crash_loop) {
    for (auto& action : spawn(now)) actions.push_back(action);
    return actions;
  }
  s_.state = decision.crash_loop ? ReplicaState::crash_loop : ReplicaState::backoff;
  s_.pending_reason.reset();
  actions.push_back({.kind = Act::arm_timer, .delay = decision.delay});
  return actions;
}

std::vector<ReplicaAction> ReplicaMachine::handle(const ReplicaEvent& event, TimePoint now,
                                                  double random01) {
  const bool waiting = s_.state == ReplicaState::backoff || s_.state == ReplicaState::crash_loop;
  const bool live = s_.state == ReplicaState::starting || s_.state == ReplicaState::ready;
  switch (event.kind) {
    case Kind::start:
      if (s_.state == ReplicaState::stopped || s_.state == ReplicaState::failed) return spawn(now);
      return {};
    case Kind::spawned:
      if (s_.state == ReplicaState::starting) {
        return {{.kind = Act::arm_timer, .delay = policy_.start_period}};
      }
      return {};
    case Kind::ready:
      if (s_.state != ReplicaState::starting) return {};
      s_.state = ReplicaState::ready;
      s_.ever_ready = true;
      return {{Act::cancel_timer}, {Act::start_health}};
    case Kind::unhealthy:
      if (s_.state != ReplicaState::ready) return {};
      return begin_stop(ReplicaState::unhealthy, ExitReason::health);
    case Kind::protocol_error:
      if (!live) return {};
      return begin_stop(ReplicaState::unhealthy, ExitReason::protocol);
    case Kind::queue_empty:
      if (s_.state != ReplicaState::quiescing) return {};
      return quiesce(event);
    case Kind::timer:
      if (s_.state == ReplicaState::quiescing) return quiesce(event);
      if (s_.state == ReplicaState::starting) {
        return begin_stop(ReplicaState::unhealthy, ExitReason::start_timeout);
      }
      if (waiting) return spawn(now);
      if (running()) return {{Act::kill}};
      return {};
    case Kind::drain:
      if (s_.state == ReplicaState::draining || s_.state == ReplicaState::quiescing) return {};
      if (live && policy_.steered) {
        s_.state = ReplicaState::quiescing;
        s_.pending_reason = ExitReason::stop;
        s_.queue_empty = false;
        return {{Act::steer_away}, {.kind = Act::arm_timer, .delay = policy_.quiesce_limit}};
      }
      if (live) return begin_drain();
      [[fallthrough]];
    case Kind::stop:
      if (waiting) {
        s_.state = ReplicaState::stopped;
        return {{Act::cancel_timer}, {Act::retire}};
      }
      if (s_.state == ReplicaState::stopped || s_.state == ReplicaState::failed) return {{Act::retire}};
      if (running() && s_.state != ReplicaState::stopping) {
        return begin_stop(ReplicaState::stopping, ExitReason::stop);
      }
      return {};
    case Kind::exited:
      if (!running()) return {};
      return on_exit(event.status, event.out_of_memory, now, random01);
    case Kind::spawn_failed:  // may arrive after a stop or drain was decided: it ends that too
      if (!running()) return {};
      return on_exit(ExitStatus{}, false, now, random01);
  }
  return {};
}

std::string describe_exit(std::optional<int> code, std::optional<int> signal) {
  if (code) return "code " + std::to_string(*code);
  if (signal) return "signal " + std::to_string(*signal) + " (" + signal_name(*signal) + ")";
  return "not started";
}

std::string describe_exit(const ExitStatus& status) {
  if (status.unknown && !status.code && !status.signal) return "exit status unknown";
  return describe_exit(status.code, status.signal);
}

}  // namespace deployctl
