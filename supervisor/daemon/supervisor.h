// The supervisor daemon: one Asio event loop that feeds the pure deployment core (deployment.h)
// one event at a time from a queue and performs the actions it returns (spawn, signal, reap,
// read output and control messages, serve the management socket). Performing an action never
// handles an event: what the edges report is queued. Single-threaded: everything runs on `io`.
#pragma once

#include "asio.h"
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cgroup.h"
#include "tree_cgroup.h"
#include "child_watcher.h"
#include "control_protocol.h"
#include "deployment.h"
#include "events.h"
#include "fd_keeper.h"
#include "health.h"
#include "load.h"
#include "json.h"
#include "leftovers.h"
#include "listen_sockets.h"
#include "management.h"
#include "metrics_counters.h"
#include "metrics_text.h"
#include "output.h"
#include "paths.h"
#include "probes.h"
#include "process.h"
#include "replica_machine.h"
#include "replica_sockets.h"
#include "seams.h"
#include "spec.h"
#include "upgrade.h"

namespace deployctl {

class PreStartRunner;
struct PreStartOutcome;
class LogWriter;
class DbusApi;
class TlsFiles;
struct ReplicaTlsFds;
class TlsWatch;
class AcmeManager;
struct AcmeCarried;
class MetricsHttpServer;
struct Adoption;

class Supervisor {
 public:
  // Called once: when every replica is ready (ok) or when the start failed (with the reason).
  using StartedCallback = std::function<void(bool ok, const std::string& message)>;

  // `listen` maps service name -> its bound sockets; the supervisor owns and closes them.
  // `time` and `launcher`: null for the real ones (tests pass fakes); not owned.
  Supervisor(boost::asio::io_context& io, Spec spec,
             std::map<std::string, std::vector<ListenSocket>> listen, StatePaths paths,
             StartedCallback on_started, const TimeSource* time = nullptr,
             ProcessLauncher* launcher = nullptr);
  ~Supervisor();

  // Serves the management socket, spawns every replica. Returns false (with *error) if the
  // management socket cannot be created; nothing is spawned then.
  bool start(std::string* error);

  // Before start() or resume(): what an upgrade in place carries besides the daemon's state.
  void set_upgrade_context(UpgradeContext context) { upgrade_ = std::move(context); }
  // Instead of start(), in a re-executed supervisor (supervisor_upgrade.cc): rebuilds the
  // daemon around the carried replicas and fds. False (with *error) if the state is unusable.
  bool resume(const CarriedState& carried, std::string* error);
  // Instead of start(), in an `up` that found the replicas of a crashed supervisor and got
  // their fds from its keeper (supervisor_crash.cc): takes them over and resumes supervision.
  bool adopt(Adoption adoption, std::string* error);

  // After resume(): counts the upgrade, or, if this is the previous binary taken back because
  // the new one could not resume (`rolled_back` says why), the failure.
  void note_resumed(const std::string& rolled_back);

  // Counts the runs of pre-start steps for the metrics and shows each as an event (`up` runs
  // them before start()).
  void record_pre_start(const std::vector<PreStartOutcome>& steps);

  // Before start(): false keeps the D-Bus API off (`up --no-dbus`).
  void set_dbus_enabled(bool enabled) { dbus_enabled_ = enabled; }

  // 0 after a clean stop; 1 if the start failed.
  int exit_code() const { return acme_failed_ ? 1 : core_.state().exit_code; }
  // True once `down` was requested (its persisted scale should be forgotten).
  bool stopped_by_request() const { return core_.state().stopped_by_request; }

 private:
  struct Service;
  struct Replica;
  struct OutputPipe;
  using ReplicaPtr = std::shared_ptr<Replica>;

  // The event queue: edges enqueue; run_queue() feeds the core one event at a time and
  // performs its actions. `run`/`timer` (when non-zero) drop an event whose replica has since
  // been respawned or whose timer was re-armed or cancelled.
  struct Queued {
    Event event;
    std::uint64_t run = 0;
    std::uint64_t timer = 0;
  };
  void enqueue(Queued item);
  void run_queue();
  bool stale(const Queued& item) const;
  void perform(const Action& action);
  void perform_step(const ReplicaPtr& replica, const ReplicaAction& step);
  ReplicaPtr runtime(std::uint64_t serial);  // created at the replica's first action
  void spawn(const ReplicaPtr& replica);
  void arm_timer(const ReplicaPtr& replica, Duration delay);
  void log_exit(const ReplicaPtr& replica, const ReplicaAction& step);
  void retire(const ReplicaPtr& replica);
  void reply(const Action& action);
  void started(const Action& action);

  // Edges.
  void watch_signals();
  void on_replica_exit(const ReplicaPtr& replica, int wait_status);
  void replica_exited(const ReplicaPtr& replica, ExitStatus status);
  void replica_event(const ReplicaPtr& replica, Event::Kind kind);
  void read_control(const ReplicaPtr& replica);
  void on_control_message(const ReplicaPtr& replica, const control::Message& message);
  void send_control(const ReplicaPtr& replica, const std::string& message);
  void schedule_health(const ReplicaPtr& replica);
  void on_health_pass(const ReplicaPtr& replica, std::uint64_t seq);
  void probe_until_ready(const ReplicaPtr& replica, std::optional<TimePoint> passing_since = {});
  bool accepts_itself(const Replica& replica) const;
  // Per-replica sockets (supervisor_replica_sockets.cc): the fds a replica inherits from 3 on,
  // the steering of each group to the core's targets, a quiescing replica's queue watch, and
  // the release of a retired replica's socket; carrying them across an upgrade or a crash.
  std::vector<int> listen_fds(const Replica& replica, std::string* error);
  int own_socket(const Replica& replica) const;
  void steer(const std::string& service);
  void steer_away(const ReplicaPtr& replica);
  void release_socket(const Replica& replica);
  CarriedGroups replica_socket_groups() const;
  void adopt_replica_sockets(const CarriedGroups& groups);
  ProbeTarget probe_target(const Replica& replica) const;
  void read_output(const ReplicaPtr& replica, OutputPipe& pipe);
  void drain_output(const ReplicaPtr& replica, OutputPipe& pipe);
  void emit_lines(const ReplicaPtr& replica, OutputPipe& pipe, std::vector<std::string>& lines);
  void close_channels(Replica& replica);
  std::vector<std::string> replica_environment(
      const Replica& replica, const PlaceholderValues& values, const std::string& notify_socket,
      const std::optional<SpawnRequest::Credentials>& credentials, std::string* error) const;
  // {replica}, {port}, {tls_cert}, {tls_key} of the service's replica `index` (supervisor_tls.cc).
  PlaceholderValues placeholders(const ServiceSpec& spec, int index) const;
  // The [tls] descriptors of a replica, inherited from `first_fd` on (supervisor_tls.cc).
  void replica_tls_fds(const ServiceSpec& spec,
                       const std::optional<SpawnRequest::Credentials>& credentials, int first_fd,
                       PlaceholderValues& values, ReplicaTlsFds& fds, std::string* error);
  void start_tls();
  void watch_tls();
  void tls_files_changed(const std::string& service);
  void tls_files_served(const std::string& service);
  std::string tls_reload_problem(const Spec& next) const;
  json::Value tls_json(const std::string& service) const;  // null without [tls]
  // ACME (supervisor_acme.cc).
  // `carried`: what an upgrade or a crashed supervisor left of each acme service (acme_carry.h).
  bool start_acme(std::string* error, std::map<std::string, AcmeCarried> carried);
  // Across an upgrade or a crash (supervisor_acme_carry.cc).
  json::Value acme_upgrade_state(std::vector<int>* fds) const;
  std::string acme_upgrade_refusal() const;  // "" unless lego runs now
  void keep_acme_sockets(std::map<std::string, int>& fds) const;  // for the fd keeper
  void record_acme_listeners(std::vector<RecordedReplica>& live) const;
  void acme_issued(const std::string& error);
  void handle_renew(const json::Value& request, ManagementServer::Reply reply);
  void acme_json(const std::string& service, json::Value& tls) const;
  void certificate_metrics(const std::string& service, ServiceMetrics& metrics) const;
  std::optional<SpawnRequest::Credentials> credentials_for(const ServiceSpec& spec,
                                                           std::string* error) const;
  int open_notify_socket(const Replica& replica, std::string* name) const;
  void read_notify(const ReplicaPtr& replica);
  void read_on(const ReplicaPtr& replica, std::function<void()> next);
  ReplicaState state_of(const Replica& replica) const;

  // After each event: what systemd and D-Bus see; the end of the loop once finished.
  void after_event();
  void record_replicas();  // supervisor_record.cc
  // The record of `pid` as `id`, its start time as recorded before or read now; nullopt if gone.
  std::optional<RecordedReplica> recorded_entry(std::string id, pid_t pid, int stop_signal) const;

  // Crash survival (supervisor_crash.cc, docs/upgrade.md): the fd keeper, the adoption record.
  void start_keeper();
  void sync_keeper();
  void start_keeper_after_spawns();
  void record_adoption(const std::vector<RecordedReplica>& live);
  const std::string& applied_spec_text();
  void watch_adopted(const ReplicaPtr& replica);
  void notify_status();
  void watchdog_ping();
  void finish();
  void close_down();
  bool finished() const { return core_.state().phase == Phase::finished; }
  // Ends the event loop once the last responses reached their clients (10 ms polls, bounded).
  void stop_when_replies_sent(int tries_left);
  std::map<std::string, int> load_persisted_scale() const;
  void persist_scale() const;

  // Memory limits (supervisor_memory.cc).
  void start_memory();
  void prepare_memory_cgroup2();
  // Sets up the replica's memory cgroup (or sampling) for the run about to be spawned.
  bool prepare_memory(const ReplicaPtr& replica, SpawnRequest& request, std::string* error);
  // At the replica's exit: true if it was killed for exceeding memory.max. Releases its cgroup.
  bool memory_exit(const ReplicaPtr& replica, const ExitStatus& status);
  void release_memory_cgroup(const ReplicaPtr& replica);
  std::optional<std::uint64_t> memory_now(const Replica& replica) const;
  void schedule_memory_sample();
  void sample_memory();
  void kill_for_memory(const ReplicaPtr& replica, std::uint64_t bytes);
  void log_recycle(const Action& action);
  void finish_memory();
  json::Value memory_json(const ReplicaRecord& record, const Replica* replica) const;
  // Across an upgrade or a crash (supervisor_memory_carry.cc): the carried setup and replica
  // state (null after a crash: found again by the cgroup's path).
  json::Value memory_setup_json() const;
  void resume_memory(const json::Value* carried);
  json::Value replica_memory_json(const Replica& replica) const;
  void adopt_memory(const ReplicaPtr& replica, const json::Value* carried);

  // Every replica's tree in a cgroup of its own when cgroups are writable (supervisor_tree.cc).
  void start_tree_cgroups();
  // Puts the run about to be spawned in its own cgroup (request.tree_cgroup_procs), unless its
  // memory cgroup (cgroup2 mode) already holds its tree, or cgroups are not writable.
  void prepare_tree_cgroup(const ReplicaPtr& replica, SpawnRequest& request);
  // At the replica's exit: kills what is left of its tree and removes its cgroup.
  void release_tree_cgroup(const ReplicaPtr& replica);
  void adopt_tree_cgroup(const ReplicaPtr& replica);  // after an exec of the supervisor
  void resume_tree_cgroups(const std::string& carried_dir);
  void finish_tree_cgroups();

  // Management API.
  void handle_request(const json::Value& request, ManagementServer::Reply reply);
  void handle_scale(const json::Value& request, ManagementServer::Reply reply);
  void handle_restart(const json::Value& request, ManagementServer::Reply reply);
  void handle_reload(const std::string& path, ManagementServer::Reply reply);
  // The reload's spec and sockets, bound before pre_start runs, adopted when the core applies
  // the reload (reload_applied).
  struct PendingReload;
  // After the reload's pre-start steps: its ACME certificates first (supervisor_acme_reload.cc).
  void reload_acme(std::uint64_t request);
  void acme_reload_done(std::uint64_t request, const std::string& problem);
  void queue_reload(std::uint64_t request);
  void adopt_reload(std::uint64_t request);
  void drop_reload(std::uint64_t request);
  std::optional<ListenSocket> take_released_socket(const ListenAddress& address);
  bool holds_socket(const ListenAddress& address) const;
  std::uint64_t add_request(std::string command, ManagementServer::Reply reply);
  json::Value status_json() const;
  json::Value replica_json(const ReplicaRecord& record, const ServiceState& service,
                           TimePoint now) const;

  // Upgrade in place (supervisor_upgrade.cc, docs/upgrade.md).
  void handle_upgrade(std::string binary, ManagementServer::Reply reply);
  std::string upgrade_refusal() const;      // passing: "try again" (exit 6); "" if none
  std::optional<json::Value> upgrade_state(const std::string& binary, std::vector<int>* fds,
                                           std::string* error) const;
  void exec_when_replies_sent(const std::string& binary, int tries_left);
  void exec_upgrade(const std::string& binary, int tries_left);
  void upgrade_failed(const std::string& message);
  static void unblock_exec_signals();
  json::Value supervisor_json() const;
  void open_logs();
  void make_management();  // the management server with its request and stream handlers

  // Metrics (supervisor_metrics.cc): the exposition, rendered only when asked for.
  bool start_metrics(std::string* error);
  std::string metrics_text() const;
  MetricsSnapshot metrics_snapshot() const;
  // start_probe on the replica's target, counted and timed for the metrics.
  void timed_probe(const ReplicaPtr& replica, ProbeDone done);

  // Events (supervisor_events.cc): a bounded history, streamed live to followers.
  struct ServiceMark {
    int desired = 0;
  };
  std::map<std::string, ServiceMark> service_marks() const;
  // What `event` and its `actions` did; `before`: service_marks() before the event.
  void record_events(const Event& event, const std::vector<Action>& actions,
                     const std::map<std::string, ServiceMark>& before);
  void publish_event(DeploymentEvent event);
  bool follow_events(const json::Value& request, std::shared_ptr<ManagementStream> stream);
  json::Value events_json() const;

  // D-Bus API (dbus_supervisor.cc).
  void start_dbus();
  void publish_dbus();
  void announce_transition(const Replica& replica, const Action& transition);

  double random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); }

  boost::asio::io_context& io_;
  SteadyTime steady_time_;
  ForkExecLauncher fork_exec_;
  const TimeSource& time_;
  ProcessLauncher& launcher_;
  Spec spec_;
  StatePaths paths_;
  StartedCallback on_started_;
  Deployment core_;
  std::deque<Queued> queue_;
  std::map<std::string, std::unique_ptr<Service>> services_;  // by name: specs and sockets
  std::map<std::uint64_t, ReplicaPtr> replicas_;              // by serial: processes and I/O
  ChildWatcher children_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer finish_timer_;
  boost::asio::steady_timer watchdog_timer_;
  std::string last_status_;  // the last STATUS= sent to systemd
  std::unique_ptr<ManagementServer> management_;
  std::mt19937_64 random_{std::random_device{}()};
  bool closed_ = false;  // close_down() ran

  struct Request {
    std::string command;
    ManagementServer::Reply reply;
  };
  std::map<std::uint64_t, Request> requests_;  // waiting for the core's reply
  std::uint64_t next_request_ = 1;
  std::map<std::uint64_t, std::unique_ptr<PendingReload>> reloads_;
  std::unique_ptr<PreStartRunner> pre_start_;  // the reload's steps, while they run
  std::unique_ptr<LogWriter> logs_;             // per-service files (and the journal); may be null
  bool dbus_enabled_ = true;
  std::unique_ptr<DbusApi> dbus_;  // null when off
  std::unique_ptr<TlsFiles> tls_files_;  // ticket keys of [tls] services (tls_files.h)
  std::unique_ptr<TlsWatch> tls_watch_;  // their cert and key files on disk
  // Of each [tls] service: the files its replicas load and what was last seen of them.
  struct TlsRecord {
    std::string cert, key;
    std::size_t fingerprint = 0;  // of the bytes the latest replicas were started with
    std::int64_t checked_at = 0;  // Unix seconds of the last look at replaced files; 0: none
    std::string result;           // of that look: "ok: rolled out", or "error: ..."
  };
  std::map<std::string, TlsRecord> tls_records_;
  std::unique_ptr<AcmeManager> acme_;  // [tls] acme services: listeners, lego, schedule
  bool acme_failed_ = false;           // the first certificates could not be obtained

  UpgradeContext upgrade_;
  std::vector<RecordedReplica> recorded_;  // as last written to STATE/replicas.json
  std::unique_ptr<FdKeeper> keeper_;       // null if it could not start (or died)
  struct SpecText {
    std::vector<ServiceSpec> services;  // what `text` was read for
    std::string text;                   // the spec file as applied; "" if unknown
  } spec_text_;
  std::string adoption_written_;  // as last written to STATE/adopt.json
  bool adoption_written_settled_ = false;  // ... and its core state was settled (adoption.h)

  MemorySetup memory_setup_;
  bool memory_cgroup2_ready_ = false;  // prepare_cgroup2 done
  std::vector<ReplicaCgroup> cgroups_to_remove_;  // of exited replicas, members still exiting
  boost::asio::steady_timer memory_timer_;
  bool memory_timer_armed_ = false;
  TreeCgroups tree_cgroups_;  // not enabled: replicas are tracked by process group only

  struct ProbeStats {
    std::map<std::string, std::uint64_t> results;  // "pass" | "fail"
    HistogramSnapshot seconds{probe_buckets()};
  };
  DeploymentCounters counters_;                   // the core's restarts, OOM kills, rollouts
  std::map<std::string, ProbeStats> probe_stats_;  // by service
  struct PreStartStats {
    std::map<std::string, std::uint64_t> results;  // kPreStartResults
    HistogramSnapshot seconds{pre_start_buckets()};
  };
  std::map<std::string, PreStartStats> pre_start_stats_;  // by step
  std::unique_ptr<MetricsHttpServer> metrics_http_;  // null without [metrics]
  EventHistory events_;
  std::vector<std::shared_ptr<ManagementStream>> followers_;  // `events -f` clients
  static constexpr std::size_t kMaxFollowers = 8;
};

}  // namespace deployctl
