// The supervisor daemon: one Asio event loop that runs the pure core (replica machines, health
// checkers, scale planner) and performs what it decides (spawn, signal, reap, read output and
// control messages, serve the management socket). Single-threaded: everything runs on `io`.
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
#include "child_watcher.h"
#include "control_protocol.h"
#include "health.h"
#include "json.h"
#include "listen_sockets.h"
#include "management.h"
#include "output.h"
#include "paths.h"
#include "probes.h"
#include "process.h"
#include "replica_machine.h"
#include "spec.h"

namespace deployctl {

struct ExitRecord {
  ExitStatus status;
  ExitReason reason;
  TimePoint at;
  std::vector<std::string> stderr_tail;
};

class PreStartRunner;
class LogWriter;
class DbusApi;

class Supervisor {
 public:
  // Called once: when every replica is ready (ok) or when the start failed (with the reason).
  using StartedCallback = std::function<void(bool ok, const std::string& message)>;

  // `listen` maps service name -> its bound sockets; the supervisor owns and closes them.
  Supervisor(boost::asio::io_context& io, Spec spec,
             std::map<std::string, std::vector<ListenSocket>> listen, StatePaths paths,
             StartedCallback on_started);
  ~Supervisor();

  // Serves the management socket, spawns every replica. Returns false (with *error) if the
  // management socket cannot be created; nothing is spawned then.
  bool start(std::string* error);

  // Before start(): false keeps the D-Bus API off (`up --no-dbus`).
  void set_dbus_enabled(bool enabled) { dbus_enabled_ = enabled; }

  // 0 after a clean stop; 1 if the start failed.
  int exit_code() const { return exit_code_; }
  // True once `down` was requested (its persisted scale should be forgotten).
  bool stopped_by_request() const { return stopped_by_request_; }

 private:
  struct Service;
  struct Replica;
  struct OutputPipe;
  using ReplicaPtr = std::shared_ptr<Replica>;
  enum class Phase { starting, running, stopping, finished };

  // Core <-> edge.
  void dispatch(const ReplicaPtr& replica, ReplicaEvent event);
  void perform(const ReplicaPtr& replica, const ReplicaAction& action);
  void spawn(const ReplicaPtr& replica);
  void arm_timer(const ReplicaPtr& replica, Duration delay);
  void record_exit(const ReplicaPtr& replica, const ReplicaAction& action);
  void retire(const ReplicaPtr& replica);

  // Edges.
  void watch_signals();
  void on_replica_exit(const ReplicaPtr& replica, int wait_status);
  void read_control(const ReplicaPtr& replica);
  void on_control_message(const ReplicaPtr& replica, const control::Message& message);
  void send_control(const ReplicaPtr& replica, const std::string& message);
  void schedule_health(const ReplicaPtr& replica);
  void probe_until_ready(const ReplicaPtr& replica, std::optional<TimePoint> passing_since = {});
  bool accepts_itself(const Replica& replica) const;
  ProbeTarget probe_target(const Replica& replica) const;
  void read_output(const ReplicaPtr& replica, OutputPipe& pipe);
  void drain_output(const ReplicaPtr& replica, OutputPipe& pipe);
  void emit_lines(const ReplicaPtr& replica, OutputPipe& pipe, std::vector<std::string>& lines);
  void close_channels(Replica& replica);
  std::vector<std::string> replica_environment(
      const Replica& replica, const std::string& notify_socket,
      const std::optional<SpawnRequest::Credentials>& credentials, std::string* error) const;
  std::optional<SpawnRequest::Credentials> credentials_for(const ServiceSpec& spec,
                                                           std::string* error) const;
  int open_notify_socket(const Replica& replica, std::string* name) const;
  void read_notify(const ReplicaPtr& replica);

  // Deployment-level decisions.
  ReplicaPtr add_replica(Service& service, int index);
  void apply_scale(Service& service);
  void after_events();
  void notify_status();
  void watchdog_ping();
  void reload_finished();
  bool advance_rollouts();  // true if it started or drained something
  bool rollout_running() const;
  void check_started();
  void fail_start(const ReplicaPtr& replica);
  void begin_shutdown();
  void check_finished();
  void finish();
  // Ends the event loop once the last responses reached their clients (10 ms polls, bounded).
  void stop_when_replies_sent(int tries_left);
  void check_waiters();
  void load_persisted_scale();
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
  bool recycle_for_memory(const ReplicaPtr& replica, std::uint64_t bytes);
  void check_recycle_outcome(Replica& replica);
  void inherit_memory_restarts(Service& service, Replica& fresh);
  void finish_memory();
  json::Value memory_json(const Replica& replica) const;

  // Management API.
  void handle_request(const json::Value& request, ManagementServer::Reply reply);
  void handle_scale(const json::Value& request, ManagementServer::Reply reply);
  void handle_restart(const json::Value& request, ManagementServer::Reply reply);
  void handle_reload(const std::string& path, ManagementServer::Reply reply);
  void apply_reload(Spec next, ManagementServer::Reply reply);
  Service& add_service(const ServiceSpec& spec, std::vector<ListenSocket> sockets);
  // The settled state of a service: nullopt while replicas are still starting, draining or
  // rolling; then {"ok": true} or an error response.
  std::optional<json::Value> settled(const Service& service) const;
  json::Value status_json() const;

  // D-Bus API (dbus_supervisor.cc).
  void start_dbus();
  void publish_dbus();
  void announce_transition(const Replica& replica, ReplicaState before, const ReplicaEvent& event,
                           const std::vector<ReplicaAction>& actions);

  double random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); }

  boost::asio::io_context& io_;
  Spec spec_;
  StatePaths paths_;
  StartedCallback on_started_;
  std::map<std::string, std::unique_ptr<Service>> services_;
  ChildWatcher children_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer finish_timer_;
  boost::asio::steady_timer watchdog_timer_;
  std::string last_status_;  // the last STATUS= sent to systemd
  std::unique_ptr<ManagementServer> management_;
  std::mt19937_64 random_{std::random_device{}()};
  Phase phase_ = Phase::starting;
  int exit_code_ = 0;
  bool stopped_by_request_ = false;
  int interrupts_ = 0;
  int dispatch_depth_ = 0;  // post-event checks run when the outermost dispatch ends
  bool in_after_events_ = false;
  TimePoint started_at_;

  struct Waiter {
    std::function<std::optional<json::Value>()> check;  // a response once done
    ManagementServer::Reply reply;
  };
  std::vector<Waiter> waiters_;
  std::vector<ManagementServer::Reply> down_replies_;
  std::unique_ptr<PreStartRunner> pre_start_;  // the reload's steps, while they run
  std::unique_ptr<LogWriter> logs_;             // per-service files (and the journal); may be null
  bool dbus_enabled_ = true;
  std::unique_ptr<DbusApi> dbus_;  // null when off

  MemorySetup memory_setup_;
  bool memory_cgroup2_ready_ = false;  // prepare_cgroup2 done
  std::vector<ReplicaCgroup> cgroups_to_remove_;  // of exited replicas, members still exiting
  boost::asio::steady_timer memory_timer_;
  bool memory_timer_armed_ = false;
};

}  // namespace deployctl
