// The lifecycle of one replica slot (e.g. web.2) as a state machine: State × Event → Actions.
// Pure: it performs nothing; the supervisor performs the returned actions, in order.
//
//  state         event                 → state        actions
//  stopped       start                 → starting     Spawn
//  backoff/crash timer                 → starting     Spawn                        (restarts + 1)
//  starting      spawned               → starting     ArmTimer(start_period)
//  starting      ready                 → ready        CancelTimer, StartHealth
//  starting      timer                 → unhealthy    Signal(stop), ArmTimer(stop.timeout)  [start-timeout]
//  ready         unhealthy             → unhealthy    Signal(stop), ArmTimer(stop.timeout)  [health]
//  start/ready   protocol_error        → unhealthy    Signal(stop), ArmTimer(stop.timeout)  [protocol]
//  start/ready   drain                 → draining     SendDrain, ArmTimer(stop.timeout)
//  start/ready   drain [steered]       → quiescing    SteerAway, ArmTimer(quiesce_limit)
//  quiescing     queue_empty (first)   → quiescing    CancelTimer, ArmTimer(quiesce_grace)
//  quiescing     timer                 → draining     SendDrain, ArmTimer(stop.timeout)
//  quiescing     stop                  → stopping     Signal(stop), ArmTimer(stop.timeout)
//  running       stop                  → stopping     Signal(stop), ArmTimer(stop.timeout)
//  unhealthy/draining/stopping timer   → (same)       Kill
//  quiescing/draining/stopping exited|spawn_failed → stopped  CancelTimer, RecordExit[stop], Retire
//  other running exited/spawn_failed   → by policy:   RecordExit, then   [oom if out_of_memory]
//        fail-fast start (never ready)   failed       StartFailed
//        policy says no restart          failed | stopped
//        restart                         starting     Spawn (delay 0) | backoff/crash-loop ArmTimer(delay)
//  backoff/crash stop or drain         → stopped      CancelTimer, Retire
// Any other (state, event) pair is ignored: no transition, no action.
// [steered]: the replica has a socket of its own (`sockets = "per-replica"`). Quiescing: new
// connections go to other replicas; once its accept queue is empty (or quiesce_limit passed)
// and quiesce_grace more has passed for the app to read what it accepted, it drains as usual.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backoff.h"
#include "clock.h"

namespace deployctl {

enum class ReplicaState {
  stopped, starting, ready, unhealthy, draining, stopping, backoff, crash_loop, failed,
  quiescing  // last: the state codec bounds the value by it
};

// adopted: a replica adopted after a crash of its supervisor exited; it was not the new
// supervisor's child, so its exit code or signal cannot be known (docs/upgrade.md).
enum class ExitReason { exit, signal, health, start_timeout, protocol, exec, stop, oom, adopted };

const char* state_name(ReplicaState state);
// Quiescing, draining or stopping: on its way out.
inline bool is_retiring(ReplicaState state) {
  return state == ReplicaState::draining || state == ReplicaState::stopping ||
         state == ReplicaState::quiescing;
}
const char* reason_name(ExitReason reason);

// How a process ended: exactly one of code/signal is set (neither for an exec failure).
struct ExitStatus {
  std::optional<int> code;
  std::optional<int> signal;
  bool unknown = false;  // neither can be known: the process was adopted, not our child
  bool operator==(const ExitStatus&) const = default;
};

// "code 3", "signal 9 (SIGKILL)", or "not started" when neither is set.
std::string describe_exit(std::optional<int> code, std::optional<int> signal);
// The same, and "exit status unknown" for an adopted replica's exit.
std::string describe_exit(const ExitStatus& status);

struct ReplicaEvent {
  enum class Kind { start, spawned, spawn_failed, ready, unhealthy, protocol_error, timer, drain,
                    stop, exited, queue_empty };
  Kind kind;
  ExitStatus status{};  // for `exited`
  bool out_of_memory = false;  // for `exited`: killed for exceeding memory.max
};

struct ReplicaAction {
  enum class Kind { spawn, signal, kill, send_drain, arm_timer, cancel_timer, start_health,
                    record_exit, start_failed, retire, steer_away };
  Kind kind;
  int signal = 0;          // for `signal`
  Duration delay{0};       // for `arm_timer`
  ExitReason reason{};     // for `record_exit`
  ExitStatus status{};     // for `record_exit`
  bool operator==(const ReplicaAction&) const = default;
};

std::string to_string(const ReplicaAction& action);

// What the machine needs from the service spec.
struct ReplicaPolicy {
  RestartSpec restart;
  StopSpec stop;
  Duration start_period{30000};
  // Per-replica sockets: a drain first steers connections away (quiescing).
  bool steered = false;
  Duration quiesce_limit{0};  // longest wait for the accept queue to empty: min(stop.timeout, 5 s)
  Duration quiesce_grace{0};  // then, for the app to read what it accepted: min(stop.timeout/4, 1 s)
  static ReplicaPolicy from(const ServiceSpec& service);
  bool operator==(const ReplicaPolicy&) const = default;
};

// Everything the machine remembers: a plain value, so the deployment state can hold it and
// be written out and read back.
struct ReplicaMachineState {
  ReplicaState state = ReplicaState::stopped;
  std::optional<ExitReason> pending_reason;  // why the supervisor is stopping it
  TimePoint started_at{};
  bool ever_ready = false;  // in this slot's current run of starts since `start`
  bool queue_empty = false;  // quiescing: its accept queue was seen empty
  bool fail_fast = false;
  int restarts = 0;
  BackoffState backoff;
  bool operator==(const ReplicaMachineState&) const = default;
};

class ReplicaMachine {
 public:
  explicit ReplicaMachine(ReplicaPolicy policy, ReplicaMachineState state = {})
      : policy_(policy), s_(std::move(state)) {}

  // `random01` (uniform in [0, 1)) feeds backoff jitter.
  std::vector<ReplicaAction> handle(const ReplicaEvent& event, TimePoint now, double random01);

  // While set, a replica that exits before it was ever ready fails the start instead of
  // restarting (`up` fails fast). The supervisor clears it once the deployment is up.
  void set_fail_fast(bool fail_fast) { s_.fail_fast = fail_fast; }

  const ReplicaMachineState& saved() const { return s_; }
  ReplicaState state() const { return s_.state; }
  bool running() const;   // a process exists (or is being spawned)
  bool retiring() const { return is_retiring(s_.state); }
  int restarts() const { return s_.restarts; }
  TimePoint started_at() const { return s_.started_at; }
  bool ever_ready() const { return s_.ever_ready; }

 private:
  using Actions = std::vector<ReplicaAction>;
  Actions begin_stop(ReplicaState next, ExitReason reason);
  Actions begin_drain();
  Actions quiesce(const ReplicaEvent& event);
  Actions on_exit(ExitStatus status, bool out_of_memory, TimePoint now, double random01);
  Actions spawn(TimePoint now);

  ReplicaPolicy policy_;
  ReplicaMachineState s_;
};

}  // namespace deployctl
