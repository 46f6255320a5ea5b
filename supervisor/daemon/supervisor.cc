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
#include <set>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <sstream>
#include <thread>

#include "commands.h"
#include "dbus_api.h"
#include "env_file.h"
#include "load.h"
#include "log_writer.h"
#include "pre_start.h"
#include "probes.h"
#include "process.h"
#include "rollout.h"
#include "scale_planner.h"
#include "spec_diff.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;
using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

Supervisor::Supervisor(asio::io_context& io, Spec spec,
                       std::map<std::string, std::vector<ListenSocket>> listen, StatePaths paths,
                       StartedCallback on_started)
    : io_(io),
      spec_(std::move(spec)),
      paths_(std::move(paths)),
      on_started_(std::move(on_started)),
      children_(io),
      signals_(io, SIGINT, SIGTERM, SIGHUP),
      finish_timer_(io),
      watchdog_timer_(io),
      memory_timer_(io) {
  for (const auto& service_spec : spec_.services) {
    add_service(service_spec, std::move(listen[service_spec.name]));
  }
  load_persisted_scale();
  if (!paths_.logs.empty()) {
    logs_ = std::make_unique<LogWriter>(LogSettings{
        paths_.logs, {spec_.logs.max_size, spec_.logs.keep}, stderr_is_journal()});
  }
}

Supervisor::Service& Supervisor::add_service(const ServiceSpec& spec,
                                             std::vector<ListenSocket> sockets) {
  auto service = std::make_unique<Service>();
  service->spec = std::make_shared<const ServiceSpec>(spec);
  service->desired = spec.replicas;
  service->sockets = std::move(sockets);
  return *(services_[spec.name] = std::move(service));
}

Supervisor::~Supervisor() {
  for (auto& [name, service] : services_) close_listen_sockets(service->sockets);
}

bool Supervisor::start(std::string* error) {
  management_ = std::make_unique<ManagementServer>(
      io_, paths_.socket, geteuid(),
      [this](const json::Value& request, ManagementServer::Reply reply) {
        handle_request(request, std::move(reply));
      });
  if (!management_->listen(error)) return false;
  watch_signals();
  watchdog_ping();
  start_memory();
  started_at_ = Clock::now();
  start_dbus();
  for (auto& [name, service] : services_) apply_scale(*service);
  check_started();
  return true;
}

// ---- core <-> edge -------------------------------------------------------------------------

void Supervisor::dispatch(const ReplicaPtr& replica, ReplicaEvent event) {
  ++dispatch_depth_;
  const ReplicaState before = replica->machine.state();
  const auto actions = replica->machine.handle(event, Clock::now(), random01());
  if (replica->machine.state() != before) announce_transition(*replica, before, event, actions);
  for (const auto& action : actions) perform(replica, action);
  if (--dispatch_depth_ == 0) after_events();
}

void Supervisor::after_events() {
  if (in_after_events_) return;  // events dispatched from here are covered by the loop below
  in_after_events_ = true;
  for (int pass = 0; pass < 16 && advance_rollouts(); ++pass) {
  }
  check_started();
  check_waiters();
  check_finished();
  notify_status();
  publish_dbus();
  in_after_events_ = false;
}

// STATUS= for systemd (`systemctl status` shows it): ready/desired per service, sent on change.
void Supervisor::notify_status() {
  std::string status;
  for (const auto& [name, service] : services_) {
    if (service->removed && service->replicas.empty()) continue;
    int ready = 0;
    for (const auto& [index, replica] : service->replicas) {
      if (replica->machine.state() == ReplicaState::ready) ++ready;
    }
    status += (status.empty() ? "" : ", ") + name + " " + std::to_string(ready) + "/" +
              std::to_string(service->desired) + " ready";
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
    if (!ec && phase_ != Phase::finished) watchdog_ping();
  });
}

bool Supervisor::advance_rollouts() {
  bool moved = false;
  for (auto& [name, service] : services_) {
    auto& rollout = service->rollout;
    if (!rollout || rollout->state != Rollout::State::running) continue;
    std::vector<RolloutSlot> slots;
    ReplicaPtr failed;
    for (const auto& [index, replica] : service->replicas) {
      const bool old = replica->generation < service->generation ||
                       replica->memory.recycle == ReplicaMemory::Recycle::running;
      const bool start_failed = !old && !replica->machine.ever_ready() && replica->last_exit;
      if (start_failed) failed = replica;
      slots.push_back({index, old, replica->machine.state() == ReplicaState::ready,
                       replica->machine.retiring(), start_failed});
    }
    RolloutStep step = plan_rollout(slots, service->desired, service->spec->rollout);
    if (step.status == RolloutStep::Status::done) {
      rollout->state = Rollout::State::done;
      spdlog::info("{}: rollout complete", name);
      continue;
    }
    if (step.status == RolloutStep::Status::failed) {
      const auto& exit = *failed->last_exit;
      rollout->state = Rollout::State::failed;
      rollout->error = failed->id + " did not become ready (" +
                       describe_exit(exit.status.code, exit.status.signal) + ", " +
                       reason_name(exit.reason) + "); the rollout of " + name +
                       " stopped and the old replicas keep serving";
      spdlog::error("{}", rollout->error);
      auto replicas = service->replicas;
      for (auto& [index, replica] : replicas) {
        const bool old = replica->generation < service->generation;
        if (!old && replica->machine.state() != ReplicaState::ready) {
          dispatch(replica, {Kind::stop});
        }
      }
      apply_scale(*service);  // back to the desired count, lowest indexes (the old ones) kept
      moved = true;
      continue;
    }
    for (int index : step.drain) {
      spdlog::info("{}: draining (replaced by the rollout)", service->replicas.at(index)->id);
      dispatch(service->replicas.at(index), {Kind::drain});
      moved = true;
    }
    for (int i = 0; i < step.start; ++i) {
      int index = 0;
      while (service->replicas.count(index)) ++index;
      auto fresh = add_replica(*service, index);
      inherit_memory_restarts(*service, *fresh);
      dispatch(fresh, {Kind::start});
      moved = true;
    }
  }
  return moved;
}

void Supervisor::perform(const ReplicaPtr& replica, const ReplicaAction& action) {
  switch (action.kind) {
    case Act::spawn:
      spawn(replica);
      break;
    case Act::signal:
      signal_group(replica->pid, action.signal);
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
      arm_timer(replica, action.delay);
      break;
    case Act::cancel_timer:
      ++replica->timer_generation;
      replica->timer.cancel();
      break;
    case Act::start_health:
      spdlog::info("{} (pid {}) ready after {}ms", replica->id, replica->pid,
                   ms_between(replica->spawned_at, Clock::now()));
      if (replica->health) {
        replica->health->start(Clock::now());
        schedule_health(replica);
      }
      break;
    case Act::record_exit:
      record_exit(replica, action);
      break;
    case Act::start_failed:
      fail_start(replica);
      break;
    case Act::retire:
      retire(replica);
      break;
  }
}

void Supervisor::arm_timer(const ReplicaPtr& replica, Duration delay) {
  auto generation = ++replica->timer_generation;
  replica->timer.expires_after(delay);
  replica->timer.async_wait([this, replica, generation](boost::system::error_code ec) {
    if (ec || replica->removed || generation != replica->timer_generation) return;
    dispatch(replica, {Kind::timer});
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
    const Replica& replica, const std::string& notify_socket,
    const std::optional<SpawnRequest::Credentials>& credentials, std::string* error) const {
  std::vector<std::string> env = inherited_environment();
  auto set = [&env](const std::string& key, const std::string& value) {
    set_variable(env, key, value);
  };
  const ServiceSpec& spec = *replica.spec;
  const int index = replica.index;
  const auto& sockets = replica.service.sockets;
  if (credentials) {
    if (passwd* account = getpwuid(credentials->uid)) {
      set("USER", account->pw_name);
      set("LOGNAME", account->pw_name);
      set("HOME", account->pw_dir);
    }
  }
  // env_file first, then `env`: the spec's own settings win (as docker compose does).
  if (!spec.env_file.empty()) {
    std::ifstream file(spec.env_file);
    std::stringstream text;
    text << file.rdbuf();
    std::string problem;
    auto entries = file ? parse_env_file(text.str(), &problem) : std::nullopt;
    if (!file) problem = std::strerror(errno);
    if (!entries) {
      *error = "cannot read env_file '" + spec.env_file + "': " + problem;
      return env;
    }
    for (const auto& [key, value] : *entries) set(key, value);
  }
  const auto port = replica_port(spec, index);
  for (const auto& [key, value] : spec.env) set(key, expand_placeholders(value, index, port));
  set(control::kServiceEnv, spec.name);
  set(control::kReplicaEnv, std::to_string(index));
  set(control::kControlFdEnv, std::to_string(3 + sockets.size()));
  if (!sockets.empty()) set("LISTEN_FDS", std::to_string(sockets.size()));
  if (!notify_socket.empty()) set("NOTIFY_SOCKET", notify_socket);
  if (spec.health.kind == HealthKind::control) {
    set("WATCHDOG_USEC", std::to_string(spec.health.interval.count() * 1000));
  }
  return env;
}

void Supervisor::spawn(const ReplicaPtr& replica) {
  const Service& service = replica->service;
  const ServiceSpec& spec = *replica->spec;
  const int index = replica->index;
  const auto port = replica_port(spec, index);

  SpawnRequest request;
  for (const auto& arg : spec.command) request.argv.push_back(expand_placeholders(arg, index, port));
  std::string setup_error;
  request.credentials = credentials_for(spec, &setup_error);
  std::string notify_name;
  int notify_fd = open_notify_socket(*replica, &notify_name);
  request.env = replica_environment(*replica, notify_fd >= 0 ? notify_name : std::string(),
                                    request.credentials, &setup_error);
  request.argv[0] = resolve_command(request.argv[0], path_variable(request.env));
  request.working_dir = spec.working_dir;
  for (const auto& socket : service.sockets) request.inherit_fds.push_back(socket.fd);
  request.set_listen_pid = !service.sockets.empty();
  if (setup_error.empty()) prepare_memory(replica, request, &setup_error);

  int control_pair[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  SpawnResult result;
  if (!setup_error.empty()) {
    result.message = setup_error;
  } else if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control_pair) != 0 ||
      pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.message = std::string("cannot create replica channels: ") + std::strerror(errno);
  } else {
    request.inherit_fds.push_back(control_pair[1]);
    request.stdout_fd = out[1];
    request.stderr_fd = err[1];
    result = spawn_process(request);
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
    spdlog::error("{}: {}", replica->id, result.message);
    replica->spawn_error = result.message;
    replica->stderr_tail.push_back(result.message);
    dispatch(replica, {Kind::spawn_failed});
    return;
  }
  replica->spawn_error.clear();
  replica->pid = result.pid;
  replica->spawned_at = Clock::now();
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
  spdlog::info("{} started (pid {})", replica->id, result.pid);
  read_control(replica);
  read_notify(replica);
  read_output(replica, replica->out);
  read_output(replica, replica->err);
  dispatch(replica, {Kind::spawned});
  // Without health checks there is no readiness signal to wait for: running is ready.
  if (spec.health.kind == HealthKind::none) dispatch(replica, {Kind::ready});
  if (is_probe(spec.health.kind)) probe_until_ready(replica);
}

void Supervisor::record_exit(const ReplicaPtr& replica, const ReplicaAction& action) {
  ExitRecord record{action.status, action.reason, Clock::now(),
                    {replica->stderr_tail.begin(), replica->stderr_tail.end()}};
  std::string what = describe_exit(action.status.code, action.status.signal);
  if (action.reason != ExitReason::exit && action.reason != ExitReason::signal &&
      action.reason != ExitReason::exec) {
    what += std::string(" [") + reason_name(action.reason) + "]";
  }
  if (action.reason == ExitReason::exec) {
    // Already logged with its cause at spawn time.
  } else if (action.reason == ExitReason::stop) {
    spdlog::info("{} (pid {}) exited: {}", replica->id, replica->exited_pid, what);
  } else {
    spdlog::warn("{} (pid {}) exited: {}", replica->id, replica->exited_pid, what);
  }
  replica->last_exit = std::move(record);
}

void Supervisor::retire(const ReplicaPtr& replica) {
  replica->removed = true;
  ++replica->timer_generation;
  replica->timer.cancel();
  close_channels(*replica);
  auto& replicas = replica->service.replicas;
  auto it = replicas.find(replica->index);
  if (it != replicas.end() && it->second == replica) replicas.erase(it);
}

// ---- edges: signals and exits ----------------------------------------------------------------

void Supervisor::watch_signals() {
  signals_.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec || phase_ == Phase::finished) return;
    switch (signal) {
      case SIGINT:
      case SIGTERM:
        if (++interrupts_ == 1) {
          spdlog::info("{} received; stopping {}", signal_name(signal), spec_.name);
          begin_shutdown();
        } else {
          spdlog::warn("{} received again; killing every replica now", signal_name(signal));
          for (auto& [name, service] : services_) {
            for (auto& [index, replica] : service->replicas) signal_group(replica->pid, SIGKILL);
          }
        }
        break;
      case SIGHUP:
        spdlog::info("SIGHUP: reloading {}", spec_.path);
        handle_reload(spec_.path, [](const json::Value& response) {
          if (const auto* error = response.find("error")) {
            spdlog::error("reload failed: {}", error->as_string());
          }
        });
        break;
    }
    if (phase_ != Phase::finished) watch_signals();
  });
}

void Supervisor::on_replica_exit(const ReplicaPtr& replica, int wait_status) {
  replica->exited_pid = replica->pid;
  replica->pid = -1;
  drain_output(replica, replica->out);
  drain_output(replica, replica->err);
  close_channels(*replica);
  ExitStatus status;
  if (WIFEXITED(wait_status)) status.code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) status.signal = WTERMSIG(wait_status);
  const bool out_of_memory = memory_exit(replica, status);
  dispatch(replica, {Kind::exited, status, out_of_memory});
}

void Supervisor::close_channels(Replica& replica) {
  replica.control.reset();
  replica.notify.reset();
  replica.out.fd.reset();
  replica.err.fd.reset();
  replica.out.pause.cancel();
  replica.err.pause.cancel();
  replica.health_timer.cancel();
}

// ---- deployment-level decisions -------------------------------------------------------------

Supervisor::ReplicaPtr Supervisor::add_replica(Service& service, int index) {
  auto replica = std::make_shared<Replica>(io_, service, index, Clock::now());
  replica->machine.set_fail_fast(phase_ == Phase::starting);
  service.replicas[index] = replica;
  return replica;
}

void Supervisor::apply_scale(Service& service) {
  std::vector<SlotView> slots;
  for (const auto& [index, replica] : service.replicas) {
    slots.push_back({index, replica->machine.retiring()});
  }
  ScalePlan plan = plan_scale(slots, service.desired);
  for (int index : plan.drain) {
    auto replica = service.replicas.at(index);
    spdlog::info("{}: draining (scale to {})", replica->id, service.desired);
    dispatch(replica, {Kind::drain});
  }
  for (int index : plan.start) dispatch(add_replica(service, index), {Kind::start});
}

void Supervisor::check_started() {
  if (phase_ != Phase::starting) return;
  std::string summary;
  for (const auto& [name, service] : services_) {
    int ready = 0;
    for (const auto& [index, replica] : service->replicas) {
      if (replica->machine.state() == ReplicaState::ready) ++ready;
    }
    if (ready < service->desired) return;
    summary += (summary.empty() ? "" : ", ") + name + " " + std::to_string(ready) + "/" +
               std::to_string(service->desired);
    for (const auto& socket : service->sockets) summary += " on " + socket.address.text;
  }
  phase_ = Phase::running;
  for (const auto& [name, service] : services_) {
    for (const auto& [index, replica] : service->replicas) replica->machine.set_fail_fast(false);
  }
  std::string message = spec_.name + " is up in " +
                        std::to_string(ms_between(started_at_, Clock::now())) + "ms: " + summary;
  spdlog::info("{}", message);
  sd_notify(0, "READY=1");
  if (on_started_) std::exchange(on_started_, nullptr)(true, message);
}

void Supervisor::fail_start(const ReplicaPtr& replica) {
  if (phase_ != Phase::starting) return;
  std::string message = replica->id + " failed to start: ";
  const auto& exit = replica->last_exit;
  if (!replica->spawn_error.empty()) {
    message += replica->spawn_error;
  } else if (exit) {
    message += std::string("exited with ") + describe_exit(exit->status.code, exit->status.signal) +
               " before it became ready";
    if (exit->reason == ExitReason::start_timeout) {
      message += " (not ready within health.start_period)";
    }
    if (!exit->stderr_tail.empty()) {
      message += "; last lines of its stderr:";
      for (const auto& line : exit->stderr_tail) message += "\n  " + replica->id + " | " + line;
    }
  }
  spdlog::error("{}", message);
  exit_code_ = kExitFailed;
  if (on_started_) std::exchange(on_started_, nullptr)(false, message);
  begin_shutdown();
}

void Supervisor::begin_shutdown() {
  if (phase_ == Phase::stopping || phase_ == Phase::finished) return;
  phase_ = Phase::stopping;
  sd_notify(0, "STOPPING=1");
  for (auto& [name, service] : services_) {
    auto replicas = service->replicas;  // stopping may retire, which erases from the map
    for (auto& [index, replica] : replicas) dispatch(replica, {Kind::stop});
  }
  check_finished();
}

void Supervisor::check_finished() {
  if (phase_ != Phase::stopping) return;
  for (const auto& [name, service] : services_) {
    if (!service->replicas.empty()) return;
  }
  finish();
}

void Supervisor::finish() {
  phase_ = Phase::finished;
  // Orphans reparented to us (we are a subreaper) are what is left of replica process trees.
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  for (;;) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    auto orphans = child_pids();
    if (orphans.empty() || Clock::now() > deadline) break;
    for (pid_t pid : orphans) {
      spdlog::info("killing leftover process {} of the deployment", pid);
      kill(pid, SIGKILL);
      signal_group(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  finish_memory();
  for (auto& [name, service] : services_) close_listen_sockets(service->sockets);
  json::Value done;
  done["ok"] = true;
  done["pid"] = static_cast<long long>(getpid());
  for (auto& reply : down_replies_) reply(done);
  down_replies_.clear();
  for (auto& waiter : waiters_) {
    waiter.reply(management_error("the deployment stopped", kExitFailed));
  }
  waiters_.clear();
  if (on_started_) std::exchange(on_started_, nullptr)(false, "the deployment stopped");
  management_->close();
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
