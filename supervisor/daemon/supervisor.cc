#include "supervisor.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <sstream>
#include <thread>

#include "acme_manager.h"
#include "commands.h"
#include "dbus_api.h"
#include "env_file.h"
#include "load.h"
#include "log_writer.h"
#include "metrics_http.h"
#include "pre_start.h"
#include "probes.h"
#include "process.h"
#include "read_file.h"
#include "supervisor_state.h"
#include "tls_files.h"
#include "tls_watch.h"

namespace deployctl {

namespace asio = boost::asio;
using Act = ReplicaAction::Kind;

Supervisor::Supervisor(asio::io_context& io, Spec spec,
                       std::map<std::string, std::vector<ListenSocket>> listen, StatePaths paths,
                       StartedCallback on_started, const TimeSource* time,
                       ProcessLauncher* launcher)
    : io_(io),
      time_(time ? *time : steady_time_),
      launcher_(launcher ? *launcher : fork_exec_),
      spec_(std::move(spec)),
      paths_(std::move(paths)),
      on_started_(std::move(on_started)),
      core_(DeploymentState{}),
      children_(io),
      signals_(io, SIGINT, SIGTERM, SIGHUP),
      finish_timer_(io),
      watchdog_timer_(io),
      memory_timer_(io) {
  signals_.add(SIGUSR2);  // upgrade in place (docs/upgrade.md)
  for (const auto& service_spec : spec_.services) {
    auto service = std::make_unique<Service>();
    service->spec = std::make_shared<const ServiceSpec>(service_spec);
    service->sockets = std::move(listen[service_spec.name]);
    services_[service_spec.name] = std::move(service);
  }
  core_ = Deployment(initial_state(spec_, load_persisted_scale()));
  tls_files_ = std::make_unique<TlsFiles>(paths_.dir, acme_state_dir(paths_.dir, spec_.name));
  open_logs();
}

void Supervisor::open_logs() {
  if (paths_.logs.empty()) return;
  logs_ = std::make_unique<LogWriter>(
      LogSettings{paths_.logs, {spec_.logs.max_size, spec_.logs.keep}, stderr_is_journal()});
}

Supervisor::~Supervisor() {
  for (auto& [name, service] : services_) close_listen_sockets(service->sockets);
}

void Supervisor::make_management() {
  management_ = std::make_unique<ManagementServer>(
      io_, paths_.socket, geteuid(),
      [this](const json::Value& request, ManagementServer::Reply reply) {
        handle_request(request, std::move(reply));
      });
  management_->set_stream_handler(
      [this](const json::Value& request, std::shared_ptr<ManagementStream> stream) {
        return follow_events(request, std::move(stream));
      });
}

bool Supervisor::start(std::string* error) {
  make_management();
  if (!management_->listen(error)) return false;
  if (!start_metrics(error)) return false;
  watch_signals();
  watchdog_ping();
  start_tree_cgroups();  // before start_memory, which may move this process to a leaf
  start_memory();
  start_dbus();
  if (!start_acme(error, {})) return false;  // makes the acme directories start_tls() watches
  start_tls();
  // The replicas start once every acme service has its certificate (at once if stored).
  acme_->when_issued([this](const std::string& problem) { acme_issued(problem); });
  // Posted after the start event just queued (at once unless an ACME certificate is awaited):
  // the first replicas are spawned before it runs.
  asio::post(io_, [this] { start_keeper_after_spawns(); });
  return true;
}

// The fd keeper is a fork+exec of this binary (a second dynamic load): started once the first
// replicas are spawned, not before, so that it does not delay them on a busy machine. It then
// gets everything at once; until then a crash leaves no keeper, and the next `up` stops the
// recorded replicas instead of adopting them (as when the keeper cannot start).
void Supervisor::start_keeper_after_spawns() {
  if (finished()) return;  // stopped already: close_down() had no keeper to quit
  start_keeper();
  record_replicas();  // syncs the keeper and records its pid
}

// ---- the event queue -------------------------------------------------------------------------

void Supervisor::enqueue(Queued item) {
  queue_.push_back(std::move(item));
  if (queue_.size() == 1) asio::post(io_, [this] { run_queue(); });
}

// Events queued while one is handled (by the edges its actions touched) wait their turn.
void Supervisor::run_queue() {
  while (!queue_.empty()) {
    if (!stale(queue_.front())) {
      const auto now = time_.now();
      const auto marks = service_marks();
      const auto actions = core_.handle(queue_.front().event, now, random01());
      record_events(queue_.front().event, actions, marks);
      for (const auto& action : actions) perform(action);
      counters_.observe(actions, core_, now);
      after_event();
    }
    queue_.pop_front();
  }
}

bool Supervisor::stale(const Queued& item) const {
  if (!item.run && !item.timer) return false;
  auto it = replicas_.find(item.event.replica);
  if (it == replicas_.end()) return true;
  const Replica& replica = *it->second;
  return (item.run && item.run != replica.run) ||
         (item.timer && item.timer != replica.timer_generation);
}

void Supervisor::replica_event(const ReplicaPtr& replica, Event::Kind kind) {
  enqueue({Event{.kind = kind, .replica = replica->serial}, replica->run});
}

ReplicaState Supervisor::state_of(const Replica& replica) const {
  const ReplicaRecord* record = core_.replica(replica.serial);
  return record ? record->machine.state : ReplicaState::stopped;
}

Supervisor::ReplicaPtr Supervisor::runtime(std::uint64_t serial) {
  if (auto it = replicas_.find(serial); it != replicas_.end()) return it->second;
  const ReplicaRecord* record = core_.replica(serial);
  const ServiceState* service = core_.service_of(serial);
  if (!record || !service) return nullptr;
  const std::string& name = service->settings.name;
  auto replica =
      std::make_shared<Replica>(io_, *record, name, services_.at(name)->spec, time_.now());
  replicas_[serial] = replica;
  return replica;
}

void Supervisor::perform(const Action& action) {
  using K = Action::Kind;
  switch (action.kind) {
    case K::replica:
      if (auto replica = runtime(action.replica)) perform_step(replica, action.step);
      break;
    case K::transition:
      if (auto replica = runtime(action.replica)) {
        announce_transition(*replica, action);
        steer(replica->service);
      }
      break;
    case K::force_kill:
      if (auto it = replicas_.find(action.replica); it != replicas_.end()) {
        signal_group(it->second->pid, SIGKILL);
      }
      break;
    case K::reply: reply(action); break;
    case K::started: started(action); break;
    case K::reload_applied: adopt_reload(action.request); break;
    case K::persist_scale: persist_scale(); break;
    case K::stopping: sd_notify(0, "STOPPING=1"); break;
    case K::finished: finish(); break;
    case K::recycle_started:
    case K::recycle_gave_up: log_recycle(action); break;
    case K::rollout_started:
    case K::rollout_ended: break;  // counted and shown as events (record_events)
    case K::arm_deadline: {
      auto timer = std::make_shared<asio::steady_timer>(io_, action.at);
      timer->async_wait([this, timer](boost::system::error_code ec) {
        if (!ec) enqueue({Event{.kind = Event::Kind::tick}});
      });
      break;
    }
    case K::log:
      switch (action.level) {
        case LogLevel::info: spdlog::info("{}", action.message); break;
        case LogLevel::warn: spdlog::warn("{}", action.message); break;
        case LogLevel::error: spdlog::error("{}", action.message); break;
      }
      break;
  }
}

void Supervisor::perform_step(const ReplicaPtr& replica, const ReplicaAction& step) {
  switch (step.kind) {
    case Act::spawn:
      spawn(replica);
      break;
    case Act::signal:
      signal_group(replica->pid, step.signal);
      signal_group(replica->pid, SIGCONT);  // a stopped process must run to handle it
      break;
    case Act::kill:
      spdlog::warn("{} (pid {}) did not stop within {}ms; sending SIGKILL", replica->id,
                   replica->pid, replica->spec->stop.timeout.count());
      signal_group(replica->pid, SIGKILL);
      break;
    case Act::send_drain:
      // Only a replica that has spoken the control protocol understands DRAIN=1; any other
      // (uvicorn, an sd_notify app) is asked to stop the way it knows: stop.signal.
      if (replica->control && replica->speaks_control) {
        send_control(replica, control::encode_drain());
      } else {
        signal_group(replica->pid, replica->spec->stop.signal);
        signal_group(replica->pid, SIGCONT);
      }
      break;
    case Act::arm_timer:
      arm_timer(replica, step.delay);
      break;
    case Act::cancel_timer:
      ++replica->timer_generation;
      replica->timer.cancel();
      break;
    case Act::start_health:
      spdlog::info("{} (pid {}) ready after {}ms", replica->id, replica->pid,
                   ms_between(replica->spawned_at, time_.now()));
      if (replica->health) {
        replica->health->start(time_.now());
        schedule_health(replica);
      }
      break;
    case Act::record_exit:
      log_exit(replica, step);
      break;
    case Act::start_failed:
      break;  // the core's
    case Act::retire:
      release_socket(*replica);
      retire(replica);
      break;
    case Act::steer_away:
      steer_away(replica);
      break;
  }
}

void Supervisor::arm_timer(const ReplicaPtr& replica, Duration delay) {
  auto generation = ++replica->timer_generation;
  replica->timer.expires_after(delay);
  replica->timer.async_wait([this, replica, generation](boost::system::error_code ec) {
    if (ec || replica->removed || generation != replica->timer_generation) return;
    enqueue({Event{.kind = Event::Kind::timer, .replica = replica->serial}, 0, generation});
  });
}

void Supervisor::reply(const Action& action) {
  auto it = requests_.find(action.request);
  if (it == requests_.end()) return;
  Request request = std::move(it->second);
  requests_.erase(it);
  if (request.command == "reload") {
    drop_reload(action.request);
    sd_notify(0, "READY=1");  // systemd's reload protocol: READY=1 when done, whatever the outcome
  }
  if (!action.ok) {
    request.reply(management_error(action.message, exit_code_of(action.code)));
    return;
  }
  json::Value done;
  done["ok"] = true;
  if (request.command == "down") done["pid"] = static_cast<long long>(getpid());
  request.reply(done);
}

void Supervisor::started(const Action& action) {
  if (action.ok) sd_notify(0, "READY=1");
  if (on_started_) std::exchange(on_started_, nullptr)(action.ok, action.message);
}

void Supervisor::after_event() {
  // Once the queue is drained: the record holds every replica (O(replicas) per write), and a
  // batch (a scale's spawns, each queuing its `spawned` event) would otherwise rewrite it per
  // event. The queue is drained in this same turn of the loop, without waiting for I/O.
  if (queue_.size() <= 1 || finished()) record_replicas();
  notify_status();
  publish_dbus();
  if (finished() && !std::exchange(closed_, true)) close_down();
}

// STATUS= for systemd (`systemctl status` shows it): ready/desired per service, sent on change.
void Supervisor::notify_status() {
  std::string status;
  for (const ServiceState* service : in_file_order(core_.state())) {
    if (service->removed && service->replicas.empty()) continue;
    status += (status.empty() ? "" : ", ") + service->settings.name + " " +
              std::to_string(ready_count(*service)) + "/" + std::to_string(service->desired) +
              " ready";
  }
  if (status == last_status_) return;
  last_status_ = status;
  sd_notify(0, ("STATUS=" + status).c_str());
}

// WATCHDOG=1 from the event loop itself, at half the interval systemd asked for: a stuck
// loop stops it and systemd restarts the supervisor.
void Supervisor::watchdog_ping() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  sd_notify(0, "WATCHDOG=1");
  watchdog_timer_.expires_after(std::chrono::microseconds(usec / 2));
  watchdog_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec && !finished()) watchdog_ping();
  });
}

// Privileges are dropped only when the supervisor runs as root; otherwise `user` is ignored
// (logged once at start-up).
std::optional<SpawnRequest::Credentials> Supervisor::credentials_for(const ServiceSpec& spec,
                                                                     std::string* error) const {
  if (geteuid() != 0 || (spec.user.empty() && spec.group.empty())) return std::nullopt;
  return lookup_credentials(spec.user.empty() ? "root" : spec.user, spec.group, error);
}

std::vector<std::string> Supervisor::replica_environment(
    const Replica& replica, const PlaceholderValues& values, const std::string& notify_socket,
    const std::optional<SpawnRequest::Credentials>& credentials, std::string* error) const {
  std::vector<std::string> env = inherited_environment();
  auto set = [&env](const std::string& key, const std::string& value) {
    set_variable(env, key, value);
  };
  const ServiceSpec& spec = *replica.spec;
  const int index = replica.index;
  const auto& sockets = services_.at(replica.service)->sockets;
  if (credentials) {
    if (passwd* account = getpwuid(credentials->uid)) {
      set("USER", account->pw_name);
      set("LOGNAME", account->pw_name);
      set("HOME", account->pw_dir);
    }
  }
  // env_file first, then `env`: the spec's own settings win (as docker compose does).
  if (!spec.env_file.empty()) {
    FileRead file = read_file(spec.env_file, kMaxEnvFileBytes);
    std::string problem = file.error;
    auto entries = file.ok() ? parse_env_file(file.text, &problem) : std::nullopt;
    if (!entries) {
      *error = "cannot read env_file '" + spec.env_file + "': " + problem;
      return env;
    }
    for (const auto& [key, value] : *entries) set(key, value);
  }
  for (const auto& [key, value] : spec.env) set(key, expand_placeholders(value, values));
  if (values.tls_cert && values.tls_key) {
    set(control::kTlsCertEnv, *values.tls_cert);
    set(control::kTlsKeyEnv, *values.tls_key);
  }
  set(control::kServiceEnv, spec.name);
  set(control::kReplicaEnv, std::to_string(index));
  const std::size_t listen_fds = spec.sockets == SocketMode::per_replica ? 1 : sockets.size();
  set(control::kControlFdEnv, std::to_string(3 + listen_fds));
  if (listen_fds > 0) set("LISTEN_FDS", std::to_string(listen_fds));
  if (!notify_socket.empty()) set("NOTIFY_SOCKET", notify_socket);
  if (spec.health.kind == HealthKind::control) {
    set("WATCHDOG_USEC", std::to_string(spec.health.interval.count() * 1000));
  }
  return env;
}

void Supervisor::spawn(const ReplicaPtr& replica) {
  const ServiceSpec& spec = *replica->spec;
  PlaceholderValues values = placeholders(spec, replica->index);

  SpawnRequest request;
  std::string setup_error;
  const std::vector<int> listen = listen_fds(*replica, &setup_error);
  request.credentials = credentials_for(spec, &setup_error);
  // [tls]: the ticket key (and cert and key), inherited after the control socket (tls_files.h).
  ReplicaTlsFds tls_fds;
  if (spec.tls && setup_error.empty()) {
    const int first_fd = static_cast<int>(3 + listen.size() + 1);
    replica_tls_fds(spec, request.credentials, first_fd, values, tls_fds, &setup_error);
  }
  for (const auto& arg : spec.command) request.argv.push_back(expand_placeholders(arg, values));
  std::string notify_name;
  int notify_fd = open_notify_socket(*replica, &notify_name);
  request.env = replica_environment(*replica, values, notify_fd >= 0 ? notify_name : std::string(),
                                    request.credentials, &setup_error);
  if (!tls_fds.ticket_path.empty()) {
    set_variable(request.env, control::kTlsTicketKeyEnv, tls_fds.ticket_path);
  }
  request.argv[0] = resolve_command(request.argv[0], path_variable(request.env));
  request.working_dir = spec.working_dir;
  request.inherit_fds = listen;
  request.set_listen_pid = !listen.empty();
  if (setup_error.empty()) prepare_memory(replica, request, &setup_error);
  if (setup_error.empty()) prepare_tree_cgroup(replica, request);

  int control_pair[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  SpawnResult result;
  if (!setup_error.empty()) {
    result.message = setup_error;
  } else if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control_pair) != 0 ||
      pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.message = std::string("cannot create replica channels: ") + std::strerror(errno);
  } else {
    request.inherit_fds.push_back(control_pair[1]);
    for (int fd : tls_fds.inherit) request.inherit_fds.push_back(fd);
    request.stdout_fd = out[1];
    request.stderr_fd = err[1];
    result = launcher_.launch(request);
  }
  for (int fd : {control_pair[1], out[1], err[1]}) {
    if (fd >= 0) close(fd);
  }
  ++replica->run;
  replica->speaks_control = false;
  replica->stderr_tail.clear();
  replica->status_text.clear();
  replica->requests.reset();
  if (result.pid < 0) {
    for (int fd : {control_pair[0], out[0], err[0], notify_fd}) {
      if (fd >= 0) close(fd);
    }
    release_memory_cgroup(replica);
    release_tree_cgroup(replica);
    spdlog::error("{}: {}", replica->id, result.message);
    replica->stderr_tail.push_back(result.message);
    Event failed{.kind = Event::Kind::spawn_failed, .replica = replica->serial};
    failed.message = result.message;
    enqueue({std::move(failed), replica->run});
    return;
  }
  replica->pid = result.pid;
  replica->spawned_at = time_.now();
  children_.watch(
      result.pid, [this, replica](int wait_status) { on_replica_exit(replica, wait_status); },
      /*kill_group=*/true);
  replica->control = std::make_unique<asio::posix::stream_descriptor>(io_, control_pair[0]);
  replica->out.fd = std::make_unique<asio::posix::stream_descriptor>(io_, out[0]);
  replica->err.fd = std::make_unique<asio::posix::stream_descriptor>(io_, err[0]);
  if (notify_fd >= 0) {
    replica->notify = std::make_unique<asio::posix::stream_descriptor>(io_, notify_fd);
  }
  for (auto* channel : {replica->control.get(), replica->out.fd.get(), replica->err.fd.get()}) {
    boost::system::error_code ignored;
    channel->non_blocking(true, ignored);
  }
  replica->env = request.env;
  if (spec.health.kind != HealthKind::none) {
    replica->health.emplace(spec.health);
  } else {
    replica->health.reset();
  }
  spdlog::info("{} started (pid {}{})", replica->id, result.pid,
               result.born_in_cgroup ? ", born in its cgroup" : "");
  read_control(replica);
  read_notify(replica);
  read_output(replica, replica->out);
  read_output(replica, replica->err);
  replica_event(replica, Event::Kind::spawned);
  if (is_probe(spec.health.kind)) probe_until_ready(replica);
}

void Supervisor::log_exit(const ReplicaPtr& replica, const ReplicaAction& step) {
  std::string what = describe_exit(step.status);
  if (step.reason != ExitReason::exit && step.reason != ExitReason::signal &&
      step.reason != ExitReason::exec) {
    what += std::string(" [") + reason_name(step.reason) + "]";
  }
  if (step.reason == ExitReason::exec) {
    // Already logged with its cause at spawn time.
  } else if (step.reason == ExitReason::stop) {
    spdlog::info("{} (pid {}) exited: {}", replica->id, replica->exited_pid, what);
  } else {
    spdlog::warn("{} (pid {}) exited: {}", replica->id, replica->exited_pid, what);
  }
}

void Supervisor::retire(const ReplicaPtr& replica) {
  replica->removed = true;
  ++replica->timer_generation;
  replica->timer.cancel();
  close_channels(*replica);
  replicas_.erase(replica->serial);
}

// ---- edges: signals and exits ----------------------------------------------------------------

void Supervisor::watch_signals() {
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec || finished()) return;
    switch (signal) {
      case SIGINT:
      case SIGTERM: {
        Event interrupt{.kind = Event::Kind::interrupt};
        interrupt.message = signal_name(signal);
        enqueue({std::move(interrupt)});
        break;
      }
      case SIGHUP:
        spdlog::info("SIGHUP: reloading {}", spec_.path);
        handle_reload(spec_.path, [](const json::Value& response) {
          if (const auto* error = json::find(response, "error")) {
            spdlog::error("reload failed: {}", json::as_string(*error));
          }
        });
        break;
      case SIGUSR2:  // upgrade in place to the binary at the executable's path
        spdlog::info("SIGUSR2: upgrading in place");
        handle_upgrade("", [](const json::Value&) {});
        break;
    }
    if (!finished()) watch_signals();
  });
}

void Supervisor::on_replica_exit(const ReplicaPtr& replica, int wait_status) {
  ExitStatus status;
  if (WIFEXITED(wait_status)) status.code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) status.signal = WTERMSIG(wait_status);
  replica_exited(replica, status);
}

// `status.unknown` for an adopted replica (supervisor_crash.cc): not our child.
void Supervisor::replica_exited(const ReplicaPtr& replica, ExitStatus status) {
  replica->exited_pid = replica->pid;
  replica->pid = -1;
  drain_output(replica, replica->out);
  drain_output(replica, replica->err);
  close_channels(*replica);
  Event exited{.kind = Event::Kind::exited, .replica = replica->serial, .status = status};
  exited.out_of_memory = memory_exit(replica, exited.status);
  release_tree_cgroup(replica);
  exited.stderr_tail.assign(replica->stderr_tail.begin(), replica->stderr_tail.end());
  enqueue({std::move(exited), replica->run});
}

void Supervisor::close_channels(Replica& replica) {
  replica.control.reset();
  replica.notify.reset();
  replica.out.fd.reset();
  replica.err.fd.reset();
  replica.out.pause.cancel();
  replica.err.pause.cancel();
  replica.health_timer.cancel();
  replica.probe_connection.close();
  replica.pidfd.reset();
}

// ---- the end -------------------------------------------------------------------------------

// The core has finished: every replica is gone.
void Supervisor::finish() {
  if (keeper_) keeper_->quit();  // nothing of the deployment is kept any longer
  if (acme_) acme_->stop();
  // Orphans reparented to us (we are a subreaper) are what is left of replica process trees.
  const auto deadline = time_.now() + std::chrono::seconds(2);
  for (;;) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    auto orphans = child_pids();
    if (orphans.empty() || time_.now() > deadline) break;
    for (pid_t pid : orphans) {
      spdlog::info("killing leftover process {} of the deployment", pid);
      kill(pid, SIGKILL);
      signal_group(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  finish_memory();
  finish_tree_cgroups();
  for (auto& [name, service] : services_) {
    close_listen_sockets(service->sockets);
    service->replica_sockets.clear();
  }
}

// After the finished action and the replies it brought.
void Supervisor::close_down() {
  management_->close();
  if (metrics_http_) metrics_http_->close();
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  watchdog_timer_.cancel();
  children_.stop();
  spdlog::info("{} stopped", spec_.name);
  stop_when_replies_sent(100);
}

void Supervisor::stop_when_replies_sent(int tries_left) {
  if (management_->pending_replies() == 0 || tries_left == 0) {
    io_.stop();
    return;
  }
  finish_timer_.expires_after(std::chrono::milliseconds(10));
  finish_timer_.async_wait(
      [this, tries_left](boost::system::error_code) { stop_when_replies_sent(tries_left - 1); });
}

}  // namespace deployctl
