// The deployment core: every deployment-level decision (desired counts, generations, rollouts,
// removal on reload, readiness and start phase, fail-fast during `up`, the answers to scale,
// restart, reload and down). Pure: the daemon feeds it one Event at a time with the current
// time, performs the Actions it returns in order, and feeds their results back as new events
// (docs/DESIGN.md). It never calls out; handling an event never handles another.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deployment_state.h"
#include "spec_diff.h"

namespace deployctl {

struct Event {
  enum class Kind {
    start,           // the daemon is serving: start every replica
    spawned,         // replica: its process runs
    spawn_failed,    // replica: no process (`message` says why)
    ready,           // replica: READY=1, a passing probe
    unhealthy,       // replica: missed `health.failures` checks
    protocol_error,  // replica: broke the control protocol
    exited,          // replica: `status`, `out_of_memory`, `stderr_tail`
    timer,           // replica: the timer of its last ArmTimer fired
    scale,           // request: `counts`
    restart,         // request: `services` (empty: all)
    reload,          // request: `diff` against the running spec, `next` services in file order
    down,            // request
    interrupt,       // SIGINT/SIGTERM (`message`: its name)
    memory_high,     // replica: above memory.restart_above for long enough (`bytes` now)
    tick,            // a deadline passed
    cert_changed,    // the TLS files of `services` were replaced by ones that load: roll them
    queue_empty,     // replica (quiescing): the accept queue of its own socket is empty
  };
  Kind kind = Kind::tick;
  std::uint64_t replica = 0;  // serial
  std::uint64_t request = 0;
  ExitStatus status{};
  bool out_of_memory = false;
  std::vector<std::string> stderr_tail;
  std::string message;
  std::vector<std::pair<std::string, long long>> counts;
  std::vector<std::string> services;
  SpecDiff diff;
  std::vector<ServiceSettings> next;
  std::uint64_t bytes = 0;
  std::uint64_t fd_limit = 0;  // scale: the supervisor's RLIMIT_NOFILE (0: not checked)
};

enum class LogLevel { info, warn, error };
// kExitOk, kExitFailed, kExitUsage, kExitBusy (refused: another command is under way)
enum class ReplyCode { ok, failed, usage, busy };

struct Action {
  enum class Kind {
    replica,          // perform `step` for `replica` (spawn, signal, kill, drain, timers, ...)
    transition,       // `replica` went from `before` to `after` on `event` (then `step`s follow)
    force_kill,       // SIGKILL `replica`'s process group now (second interrupt)
    reply,            // answer `request` with ok, or `message` and `code`
    started,          // the start's outcome: `ok`, `message`
    reload_applied,   // `request`'s reload is being applied: adopt the new spec now
    persist_scale,    // write the desired counts
    stopping,         // shutting down
    finished,         // every replica is gone
    recycle_started,  // `replica` is replaced for memory (`bytes`)
    recycle_gave_up,  // `replica`'s memory replacement failed; it keeps serving
    arm_deadline,     // feed a tick at `at`
    rollout_started,  // `service`'s rollout began (a rollout restarted while running: none)
    rollout_ended,    // `service`'s rollout ended: `ok` (done), or failed with `message`
    log,              // `level`, `message`
  };
  Kind kind = Kind::log;
  std::uint64_t replica = 0;
  std::string service;  // rollout_started, rollout_ended
  ReplicaAction step{};
  ReplicaState before{}, after{};
  ReplicaEvent event{};
  std::vector<ReplicaAction> steps;  // transition: what the machine decided
  std::uint64_t request = 0;
  bool ok = true;
  ReplyCode code = ReplyCode::ok;
  std::string message;
  LogLevel level = LogLevel::info;
  std::uint64_t bytes = 0;
  TimePoint at{};
};

class Deployment {
 public:
  explicit Deployment(DeploymentState state) : s_(std::move(state)) {}

  // Handles one event at `now`; `random01` (uniform in [0, 1)) feeds backoff jitter.
  std::vector<Action> handle(const Event& event, TimePoint now, double random01);

  const DeploymentState& state() const { return s_; }
  const ReplicaRecord* replica(std::uint64_t serial) const;
  const ServiceState* service_of(std::uint64_t serial) const;
  bool rollout_running() const;

 private:
  void start();
  void on_replica_event(const Event& event);
  void replica_event(ServiceState& service, ReplicaRecord& replica, ReplicaEvent event,
                     std::vector<std::string> tail = {});
  ReplicaRecord& add_replica(ServiceState& service, int index);
  void apply_scale(ServiceState& service);
  void after_event();
  bool advance_rollout(const std::string& name, ServiceState& service);
  void fail_rollout(const std::string& name, ServiceState& service, const ReplicaRecord& failed);
  void check_recycles(ServiceState& service);
  void check_started();
  void fail_start(std::uint64_t serial);
  void begin_shutdown();
  void resend_stop();
  void check_finished();
  void check_waiters();
  void memory_high(const Event& event);
  void interrupt(const Event& event);
  void certificate_changed(const Event& event);
  void begin_rollout(const std::string& name, ServiceState& service, const std::string& why);
  // Every rollout begins and ends through these, so each start and end is one action.
  void open_rollout(const std::string& name, ServiceState& service);
  void close_rollout(const std::string& name, ServiceState& service, std::string error = "");

  // Management requests (deployment_requests.cc).
  void scale(const Event& event);
  std::optional<std::string> fd_error(const Event& event) const;
  void restart(const Event& event);
  void reload(const Event& event);
  void reorder(const std::vector<ServiceSettings>& next);
  void down(const Event& event);
  std::optional<Action> answer(const Waiter& waiter) const;
  std::optional<Action> settled(const ServiceState& service, std::uint64_t request) const;

  std::pair<ServiceState*, ReplicaRecord*> find(std::uint64_t serial);
  void log(LogLevel level, std::string message);
  void reply(std::uint64_t request, ReplyCode code, std::string message);

  DeploymentState s_;
  // Of the event being handled.
  TimePoint now_{};
  double random01_ = 0;
  std::vector<Action> out_;
};

// A reply action: ok when `code` is ok, else an error with `message`.
Action reply_action(std::uint64_t request, ReplyCode code, std::string message);

}  // namespace deployctl
