#include "replica_machine.h"

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
  }
  return "?";
}

ReplicaPolicy ReplicaPolicy::from(const ServiceSpec& service) {
  return ReplicaPolicy{service.restart, service.stop, service.health.start_period};
}

bool ReplicaMachine::running() const {
  switch (state_) {
    case ReplicaState::starting:
    case ReplicaState::ready:
    case ReplicaState::unhealthy:
    case ReplicaState::draining:
    case ReplicaState::stopping:
      return true;
    default:
      return false;
  }
}

ReplicaMachine::Actions ReplicaMachine::spawn(TimePoint now) {
  state_ = ReplicaState::starting;
  pending_reason_.reset();
  started_at_ = now;
  return {{Act::spawn}};
}

ReplicaMachine::Actions ReplicaMachine::begin_stop(ReplicaState next, ExitReason reason) {
  state_ = next;
  pending_reason_ = reason;
  return {{.kind = Act::signal, .signal = policy_.stop.signal},
          {.kind = Act::arm_timer, .delay = policy_.stop.timeout}};
}

ReplicaMachine::Actions ReplicaMachine::on_exit(ExitStatus status, bool out_of_memory,
                                                TimePoint now, double random01) {
  ExitReason reason = pending_reason_ ? *pending_reason_
                      : out_of_memory ? ExitReason::oom
                      : status.signal ? ExitReason::signal
                      : status.code   ? ExitReason::exit
                                      : ExitReason::exec;
  Actions actions{{Act::cancel_timer}, {.kind = Act::record_exit, .reason = reason, .status = status}};

  if (retiring()) {
    state_ = ReplicaState::stopped;
    actions.push_back({Act::retire});
    return actions;
  }
  if (fail_fast_ && !ever_ready_) {
    state_ = ReplicaState::failed;
    actions.push_back({Act::start_failed});
    return actions;
  }
  bool clean_exit = reason == ExitReason::exit && status.code == 0;
  RestartPolicy policy = policy_.restart.policy;
  if (policy == RestartPolicy::never || (policy == RestartPolicy::on_failure && clean_exit)) {
    state_ = clean_exit ? ReplicaState::stopped : ReplicaState::failed;
    return actions;
  }
  auto decision = backoff_.on_exit(started_at_, now, random01);
  ++restarts_;
  if (decision.delay.count() == 0 && !decision.crash_loop) {
    for (auto& action : spawn(now)) actions.push_back(action);
    return actions;
  }
  state_ = decision.crash_loop ? ReplicaState::crash_loop : ReplicaState::backoff;
  pending_reason_.reset();
  actions.push_back({.kind = Act::arm_timer, .delay = decision.delay});
  return actions;
}

std::vector<ReplicaAction> ReplicaMachine::handle(const ReplicaEvent& event, TimePoint now,
                                                  double random01) {
  const bool waiting = state_ == ReplicaState::backoff || state_ == ReplicaState::crash_loop;
  const bool live = state_ == ReplicaState::starting || state_ == ReplicaState::ready;
  switch (event.kind) {
    case Kind::start:
      if (state_ == ReplicaState::stopped || state_ == ReplicaState::failed) return spawn(now);
      return {};
    case Kind::spawned:
      if (state_ == ReplicaState::starting) {
        return {{.kind = Act::arm_timer, .delay = policy_.start_period}};
      }
      return {};
    case Kind::ready:
      if (state_ != ReplicaState::starting) return {};
      state_ = ReplicaState::ready;
      ever_ready_ = true;
      return {{Act::cancel_timer}, {Act::start_health}};
    case Kind::unhealthy:
      if (state_ != ReplicaState::ready) return {};
      return begin_stop(ReplicaState::unhealthy, ExitReason::health);
    case Kind::protocol_error:
      if (!live) return {};
      return begin_stop(ReplicaState::unhealthy, ExitReason::protocol);
    case Kind::timer:
      if (state_ == ReplicaState::starting) {
        return begin_stop(ReplicaState::unhealthy, ExitReason::start_timeout);
      }
      if (waiting) return spawn(now);
      if (running()) return {{Act::kill}};
      return {};
    case Kind::drain:
      if (state_ == ReplicaState::draining) return {};
      if (live) {
        state_ = ReplicaState::draining;
        pending_reason_ = ExitReason::stop;
        return {{Act::send_drain}, {.kind = Act::arm_timer, .delay = policy_.stop.timeout}};
      }
      [[fallthrough]];
    case Kind::stop:
      if (waiting) {
        state_ = ReplicaState::stopped;
        return {{Act::cancel_timer}, {Act::retire}};
      }
      if (state_ == ReplicaState::stopped || state_ == ReplicaState::failed) return {{Act::retire}};
      if (running() && state_ != ReplicaState::stopping) {
        return begin_stop(ReplicaState::stopping, ExitReason::stop);
      }
      return {};
    case Kind::exited:
      if (!running()) return {};
      return on_exit(event.status, event.out_of_memory, now, random01);
    case Kind::spawn_failed:
      if (state_ != ReplicaState::starting) return {};
      return on_exit(ExitStatus{}, false, now, random01);
  }
  return {};
}

std::string describe_exit(std::optional<int> code, std::optional<int> signal) {
  if (code) return "code " + std::to_string(*code);
  if (signal) return "signal " + std::to_string(*signal) + " (" + signal_name(*signal) + ")";
  return "not started";
}

}  // namespace deployctl
