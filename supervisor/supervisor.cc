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
#include "env_file.h"
#include "load.h"
#include "pre_start.h"
#include "probes.h"
#include "process.h"
#include "rollout.h"
#include "scale_planner.h"
#include "spec_diff.h"


namespace deployctl {

namespace asio = boost::asio;
using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

namespace {
constexpr std::size_t kStderrTail = 20;

// The replica's own port ({port}): `port` + index when the service sets `port`.
std::optional<int> replica_port(const ServiceSpec& spec, int index) {
  if (!spec.port) return std::nullopt;
  return *spec.port + index;
}

bool is_probe(HealthKind kind) {
  return kind == HealthKind::http || kind == HealthKind::tcp || kind == HealthKind::exec;
}
constexpr double kOutputRate = 1024 * 1024;   // bytes/s read from one replica's stdout+stderr
constexpr double kOutputBurst = 1024 * 1024;

long long ms_between(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

struct Supervisor::OutputPipe {
  OutputPipe(asio::io_context& io, bool is_err) : pause(io), is_stderr(is_err) {}
  std::unique_ptr<asio::posix::stream_descriptor> fd;
  LineSplitter splitter;
  asio::steady_timer pause;
  bool is_stderr;
};

// The latest rolling replacement of a service (restart or reload).
struct Rollout {
  enum class State { running, done, failed } state = State::running;
  std::string error;
};

struct Supervisor::Service {
  std::shared_ptr<const ServiceSpec> spec;  // what new replicas are started from
  bool removed = false;                     // by a reload: draining to zero, then dropped
  int desired;
  std::uint64_t generation = 0;             // bumped by restart: replicas of older ones are replaced
  std::optional<Rollout> rollout;           // the latest rolling replacement
  std::vector<ListenSocket> sockets;
  std::map<int, ReplicaPtr> replicas;
};

struct Supervisor::Replica {
  Replica(asio::io_context& io, Service& owner, int slot, TimePoint now)
      : service(owner),
        spec(owner.spec),
        generation(owner.generation),
        index(slot),
        id(spec->name + "." + std::to_string(slot)),
        machine(ReplicaPolicy::from(*spec)),
        out(io, false),
        err(io, true),
        budget(kOutputRate, kOutputBurst, now),
        timer(io),
        health_timer(io) {}

  Service& service;
  std::shared_ptr<const ServiceSpec> spec;  // the settings it was started from
  std::uint64_t generation;
  int index;
  std::string id;
  ReplicaMachine machine;
  std::optional<HealthChecker> health;
  pid_t pid = -1;
  pid_t exited_pid = -1;
  std::uint64_t run = 0;  // incremented per spawn: handlers of an older run are stale
  TimePoint spawned_at{};
  std::unique_ptr<asio::posix::stream_descriptor> control;
  bool speaks_control = false;  // sent a valid message on the control socket in this run
  std::unique_ptr<asio::posix::stream_descriptor> notify;  // its NOTIFY_SOCKET (sd_notify)
  OutputPipe out, err;
  ReadBudget budget;
  asio::steady_timer timer, health_timer;
  std::uint64_t timer_generation = 0;
  std::deque<std::string> stderr_tail;
  std::vector<std::string> env;  // of the current run (exec probes run with it)
  std::string spawn_error;
  std::optional<ExitRecord> last_exit;
  std::string status_text;
  std::optional<std::uint64_t> requests;
  bool removed = false;
};


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
      watchdog_timer_(io) {
  for (const auto& service_spec : spec_.services) {
    add_service(service_spec, std::move(listen[service_spec.name]));
  }
  load_persisted_scale();
}

Supervisor::Service& Supervisor::add_service(const ServiceSpec& spec,
                                             std::vector<ListenSocket> sockets) {
  auto service = std::make_unique<Service>();
  service->spec = std::make_shared<const ServiceSpec>(spec);
  service->desired = spec.replicas;
  service->sockets = std::move(sockets);
  return *(services_[spec.name] = std::move(service));
}

std::optional<std::string> unsupported_feature(const Spec& spec) {
  for (const auto& service : spec.services) {
    const std::string where = spec.path + ": services." + service.name;
    if (service.memory.max || service.memory.restart_above) {
      return where + ".memory: not supported by this version of deployctl yet";
    }
  }
  return std::nullopt;
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
  started_at_ = Clock::now();
  for (auto& [name, service] : services_) apply_scale(*service);
  check_started();
  return true;
}

// ---- core <-> edge -------------------------------------------------------------------------

void Supervisor::dispatch(const ReplicaPtr& replica, ReplicaEvent event) {
  ++dispatch_depth_;
  for (const auto& action : replica->machine.handle(event, Clock::now(), random01())) {
    perform(replica, action);
  }
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
      const bool old = replica->generation < service->generation;
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
      dispatch(add_replica(*service, index), {Kind::start});
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
  dispatch(replica, {Kind::exited, status});
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

// ---- edges: control socket and health -------------------------------------------------------

void Supervisor::read_control(const ReplicaPtr& replica) {
  if (!replica->control) return;
  const auto run = replica->run;
  replica->control->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !replica->control) return;
        char buffer[control::kMaxMessage + 1];
        // At most 64 messages per wake-up, so one chatty replica cannot starve the others.
        for (int i = 0; i < 64; ++i) {
          ssize_t n = recv(replica->control->native_handle(), buffer, sizeof buffer,
                           MSG_DONTWAIT | MSG_TRUNC);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (n <= 0) {  // EOF: the replica closed its end (it is exiting)
            replica->control.reset();
            return;
          }
          control::DecodeResult decoded;
          if (static_cast<std::size_t>(n) > control::kMaxMessage) {
            decoded.error = "message of " + std::to_string(n) + " bytes exceeds the limit of " +
                            std::to_string(control::kMaxMessage);
          } else {
            decoded = control::decode(std::string_view(buffer, static_cast<std::size_t>(n)));
          }
          if (!decoded.message) {
            spdlog::warn("{} (pid {}) broke the control protocol ({}); replacing it", replica->id,
                         replica->pid, decoded.error);
            replica->control.reset();
            dispatch(replica, {Kind::protocol_error});
            return;
          }
          replica->speaks_control = true;
          on_control_message(replica, *decoded.message);
          if (replica->run != run || !replica->control) return;
        }
        read_control(replica);
      });
}

void Supervisor::on_control_message(const ReplicaPtr& replica, const control::Message& message) {
  if (message.status) replica->status_text = *message.status;
  if (message.requests) replica->requests = message.requests;
  if (message.pong && replica->health) replica->health->on_pong(*message.pong, Clock::now());
  if (message.watchdog && replica->health) replica->health->on_alive(Clock::now());
  if (message.ready) dispatch(replica, {Kind::ready});
}

int Supervisor::open_notify_socket(const Replica& replica, std::string* name) const {
  // Abstract address: nothing on disk to clean up; unique per supervisor, replica and run.
  *name = "@deployctl/" + std::to_string(getpid()) + "/" + replica.id + "/" +
          std::to_string(replica.run + 1);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name->data() + 1, name->size() - 1);
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name->size());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    spdlog::warn("{}: no NOTIFY_SOCKET: {}", replica.id, std::strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// sd_notify messages from software we did not write: what does not decode is logged and
// ignored, never a reason to replace the replica.
void Supervisor::read_notify(const ReplicaPtr& replica) {
  if (!replica->notify) return;
  const auto run = replica->run;
  replica->notify->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !replica->notify) return;
        char buffer[control::kMaxMessage + 1];
        for (int i = 0; i < 64; ++i) {
          ssize_t n = recv(replica->notify->native_handle(), buffer, sizeof buffer, MSG_DONTWAIT);
          if (n < 0) break;
          auto decoded = control::decode(std::string_view(buffer, static_cast<std::size_t>(n)));
          if (!decoded.message) {
            spdlog::warn("{}: ignoring an sd_notify message ({})", replica->id, decoded.error);
            continue;
          }
          on_control_message(replica, *decoded.message);
          if (replica->run != run || !replica->notify) return;
        }
        read_notify(replica);
      });
}

void Supervisor::send_control(const ReplicaPtr& replica, const std::string& message) {
  if (!replica->control) return;
  // Never blocks: a replica that does not read its socket just misses the message.
  send(replica->control->native_handle(), message.data(), message.size(),
       MSG_DONTWAIT | MSG_NOSIGNAL);
}

void Supervisor::schedule_health(const ReplicaPtr& replica) {
  if (!replica->health) return;
  const auto run = replica->run;
  replica->health_timer.expires_at(replica->health->next_deadline());
  replica->health_timer.async_wait([this, replica, run](boost::system::error_code ec) {
    if (ec || replica->run != run || replica->machine.state() != ReplicaState::ready) return;
    const auto now = Clock::now();
    const int misses_before = replica->health->misses();
    Health health = replica->health->check(now);
    if (health == Health::unhealthy) {
      spdlog::warn("{} (pid {}) missed {} health checks in a row; replacing it", replica->id,
                   replica->pid, replica->health->misses());
      dispatch(replica, {Kind::unhealthy});
      return;
    }
    if (replica->health->misses() > misses_before) {
      spdlog::warn("{} (pid {}) missed a health check ({} of {})", replica->id, replica->pid,
                   replica->health->misses(), replica->spec->health.failures);
    }
    if (auto seq = replica->health->ping_due(now)) {
      if (is_probe(replica->spec->health.kind)) {
        start_probe(io_, children_, probe_target(*replica), replica->spec->health.timeout,
                    [replica, run, seq = *seq](ProbeResult result) {
                      if (result.ok && replica->run == run) {
                        replica->health->on_pong(seq, Clock::now());
                      }
                    });
      } else {
        send_control(replica, control::encode_ping(*seq));
      }
    }
    schedule_health(replica);
  });
}

// Until it is ready, a probed replica is probed every 100 ms (or every interval, if shorter):
// the first pass (or READY=1, whichever comes first) makes it ready.
void Supervisor::probe_until_ready(const ReplicaPtr& replica) {
  const auto run = replica->run;
  const auto pause = std::min<Duration>(Duration{100}, replica->spec->health.interval);
  replica->health_timer.expires_after(pause);
  replica->health_timer.async_wait([this, replica, run](boost::system::error_code ec) {
    if (ec || replica->run != run || replica->machine.state() != ReplicaState::starting) return;
    start_probe(io_, children_, probe_target(*replica), replica->spec->health.timeout,
                [this, replica, run](ProbeResult result) {
                  if (replica->run != run ||
                      replica->machine.state() != ReplicaState::starting) {
                    return;
                  }
                  if (result.ok) {
                    dispatch(replica, {Kind::ready});
                  } else {
                    probe_until_ready(replica);
                  }
                });
  });
}

// http and tcp probe the replica's own port when it has one, else the service's first listen
// address (a wildcard address is probed on loopback).
ProbeTarget Supervisor::probe_target(const Replica& replica) const {
  const ServiceSpec& spec = *replica.spec;
  ProbeTarget target;
  target.kind = spec.health.kind;
  target.path = spec.health.path;
  const auto port = replica_port(spec, replica.index);
  if (port) {
    target.host = "127.0.0.1";
    target.port = static_cast<std::uint16_t>(*port);
  } else if (!spec.listen.empty()) {
    const auto& address = spec.listen.front();
    target.host = address.host == "0.0.0.0" ? "127.0.0.1" : address.host == "::" ? "::1" : address.host;
    target.port = address.port;
  }
  if (target.kind == HealthKind::exec) {
    for (const auto& arg : spec.health.command) {
      target.argv.push_back(expand_placeholders(arg, replica.index, port));
    }
    target.argv[0] = resolve_command(target.argv[0], path_variable(replica.env));
    target.env = replica.env;
    target.working_dir = spec.working_dir;
  }
  return target;
}

// ---- edges: replica output ------------------------------------------------------------------

void Supervisor::read_output(const ReplicaPtr& replica, OutputPipe& pipe) {
  if (!pipe.fd) return;
  const auto run = replica->run;
  pipe.fd->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, &pipe, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !pipe.fd) return;
        const auto now = Clock::now();
        std::size_t allowed = replica->budget.available(now);
        if (allowed < 512) {  // over budget: leave the bytes in the pipe; the writer slows down
          pipe.pause.expires_after(replica->budget.wait_for(4096, now));
          pipe.pause.async_wait([this, replica, &pipe, run](boost::system::error_code pause_ec) {
            if (!pause_ec && replica->run == run) read_output(replica, pipe);
          });
          return;
        }
        char buffer[64 * 1024];
        ssize_t n = read(pipe.fd->native_handle(), buffer, std::min(sizeof buffer, allowed));
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          read_output(replica, pipe);
          return;
        }
        std::vector<std::string> lines;
        if (n <= 0) {
          if (auto rest = pipe.splitter.take_rest(); !rest.empty()) lines.push_back(rest);
          emit_lines(replica, pipe, lines);
          pipe.fd.reset();
          return;
        }
        replica->budget.consume(static_cast<std::size_t>(n));
        pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
        emit_lines(replica, pipe, lines);
        read_output(replica, pipe);
      });
}

void Supervisor::drain_output(const ReplicaPtr& replica, OutputPipe& pipe) {
  if (!pipe.fd) return;
  std::vector<std::string> lines;
  char buffer[64 * 1024];
  // What the replica wrote before it died; bounded, as grandchildren may still hold the pipe.
  for (int i = 0; i < 16; ++i) {
    ssize_t n = read(pipe.fd->native_handle(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
  }
  if (auto rest = pipe.splitter.take_rest(); !rest.empty()) lines.push_back(rest);
  emit_lines(replica, pipe, lines);
}

void Supervisor::emit_lines(const ReplicaPtr& replica, OutputPipe& pipe,
                            std::vector<std::string>& lines) {
  if (lines.empty()) return;
  FILE* stream = pipe.is_stderr ? stderr : stdout;
  std::string text;
  for (auto& line : lines) {
    text += replica->id;
    text += " | ";
    text += line;
    text += '\n';
    if (pipe.is_stderr) {
      replica->stderr_tail.push_back(std::move(line));
      if (replica->stderr_tail.size() > kStderrTail) replica->stderr_tail.pop_front();
    }
  }
  std::fwrite(text.data(), 1, text.size(), stream);
  std::fflush(stream);
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

// ---- management API -------------------------------------------------------------------------

void Supervisor::check_waiters() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (auto response = it->check()) {
      auto reply = std::move(it->reply);
      it = waiters_.erase(it);
      reply(*response);
    } else {
      ++it;
    }
  }
}

void Supervisor::handle_request(const json::Value& request, ManagementServer::Reply reply) {
  const auto* field = request.find("command");
  const std::string name = field ? field->as_string() : "";
  const CommandInfo* command = find_command(name);
  if (!command || !command->served_by_daemon) {
    reply(management_error("unknown command '" + name + "'", kExitUsage));
    return;
  }
  if (name == "status") {
    json::Value response;
    response["ok"] = true;
    response["status"] = status_json();
    reply(response);
  } else if (name == "scale") {
    handle_scale(request, std::move(reply));
  } else if (name == "restart") {
    handle_restart(request, std::move(reply));
  } else if (name == "reload") {
    const auto* file = request.find("file");
    handle_reload(file && !file->as_string().empty() ? file->as_string() : spec_.path,
                  std::move(reply));
  } else if (name == "down") {
    spdlog::info("down requested; stopping {}", spec_.name);
    stopped_by_request_ = true;
    down_replies_.push_back(std::move(reply));
    begin_shutdown();
  }
}

void Supervisor::handle_scale(const json::Value& request, ManagementServer::Reply reply) {
  if (phase_ != Phase::running) {
    reply(management_error(spec_.name + " is " +
                             (phase_ == Phase::starting ? "still starting" : "stopping") +
                             "; scale it once it is running",
                         kExitFailed));
    return;
  }
  if (rollout_running()) {
    reply(management_error("a rollout is in progress; scale once it is done", kExitFailed));
    return;
  }
  const auto* counts = request.find("counts");
  if (!counts || !counts->is_object() || counts->as_object().empty()) {
    reply(management_error("scale needs counts, e.g. web=4", kExitUsage));
    return;
  }
  std::vector<std::pair<Service*, int>> changes;
  for (const auto& [name, value] : counts->as_object()) {
    auto it = services_.find(name);
    if (it == services_.end()) {
      reply(management_error("no service '" + name + "' in " + spec_.name, kExitUsage));
      return;
    }
    std::int64_t count = value.as_int(-1);
    if (!value.is_number() || count < 0 || count > 1000) {
      reply(management_error("replica count for '" + name + "' must be 0..1000", kExitUsage));
      return;
    }
    changes.emplace_back(it->second.get(), static_cast<int>(count));
  }
  Duration longest{0};
  std::vector<std::string> names;
  for (auto [service, count] : changes) {
    spdlog::info("scaling {} from {} to {}", service->spec->name, service->desired, count);
    service->desired = count;
    longest = std::max(longest, service->spec->health.start_period + service->spec->stop.timeout);
    names.push_back(service->spec->name);
  }
  persist_scale();
  for (auto [service, count] : changes) apply_scale(*service);

  const auto deadline = Clock::now() + longest + std::chrono::seconds(5);
  auto check = [this, names, deadline]() -> std::optional<json::Value> {
    for (const auto& name : names) {
      auto result = settled(*services_.at(name));
      if (!result) {
        if (Clock::now() < deadline) return std::nullopt;
        return management_error("timed out waiting for " + name + " to reach " +
                                    std::to_string(services_.at(name)->desired) +
                                    " ready replicas",
                                kExitFailed);
      }
      if (!result->find("ok")->as_bool()) return result;
    }
    json::Value done;
    done["ok"] = true;
    return done;
  };
  waiters_.push_back({check, std::move(reply)});
  auto timer = std::make_shared<asio::steady_timer>(io_, deadline);
  timer->async_wait([this, timer](boost::system::error_code ec) {
    if (!ec) check_waiters();
  });
  check_waiters();
}

bool Supervisor::rollout_running() const {
  for (const auto& [name, service] : services_) {
    if (service->rollout && service->rollout->state == Rollout::State::running) {
      return true;
    }
  }
  return false;
}

void Supervisor::handle_restart(const json::Value& request, ManagementServer::Reply reply) {
  if (phase_ != Phase::running) {
    reply(management_error(spec_.name + " is not running yet (or stopping); try again", kExitFailed));
    return;
  }
  if (rollout_running()) {
    reply(management_error("a rollout is already in progress", kExitFailed));
    return;
  }
  std::vector<std::string> names;
  if (const auto* list = request.find("services"); list && list->is_array()) {
    for (const auto& item : list->as_array()) names.push_back(item.as_string());
  }
  if (names.empty()) {
    for (const auto& [name, service] : services_) names.push_back(name);
  }
  for (const auto& name : names) {
    if (!services_.count(name)) {
      reply(management_error("no service '" + name + "' in " + spec_.name, kExitUsage));
      return;
    }
  }
  for (const auto& name : names) {
    Service& service = *services_.at(name);
    spdlog::info("{}: rolling restart of {} replicas (max_surge {}, max_unavailable {})", name,
                 service.desired, service.spec->rollout.max_surge,
                 service.spec->rollout.max_unavailable);
    ++service.generation;
    service.rollout.emplace();
  }
  waiters_.push_back({[this, names]() -> std::optional<json::Value> {
                        for (const auto& name : names) {
                          const auto& rollout = services_.at(name)->rollout;
                          if (rollout->state == Rollout::State::failed) {
                            return management_error(rollout->error, kExitFailed);
                          }
                          if (rollout->state == Rollout::State::running) return std::nullopt;
                        }
                        json::Value done;
                        done["ok"] = true;
                        return done;
                      },
                      std::move(reply)});
  after_events();
}

std::optional<json::Value> Supervisor::settled(const Service& service) const {
  if (service.rollout && service.rollout->state == Rollout::State::failed) {
    return management_error(service.rollout->error, kExitFailed);
  }
  if (service.rollout && service.rollout->state == Rollout::State::running) {
    return std::nullopt;
  }
  int ready = 0, active = 0;
  for (const auto& [index, replica] : service.replicas) {
    if (replica->machine.retiring()) return std::nullopt;
    ++active;
    auto state = replica->machine.state();
    if (state == ReplicaState::ready) ++ready;
    if (!replica->machine.ever_ready() && replica->last_exit &&
        (state == ReplicaState::backoff || state == ReplicaState::crash_loop ||
         state == ReplicaState::failed)) {
      const auto& exit = *replica->last_exit;
      return management_error(replica->id + " exited before it became ready (" +
                                  describe_exit(exit.status.code, exit.status.signal) +
                                  "); see deployctl status",
                              kExitFailed);
    }
  }
  if (ready != service.desired || active != service.desired) return std::nullopt;
  json::Value done;
  done["ok"] = true;
  return done;
}

void Supervisor::handle_reload(const std::string& path, ManagementServer::Reply reply) {
  if (phase_ != Phase::running || pre_start_ || rollout_running()) {
    reply(management_error(spec_.name + " is busy (starting, stopping, reloading or rolling "
                           "out); try again once it is done", kExitFailed));
    return;
  }
  LoadResult loaded = load_spec_file(path);
  if (!loaded.spec) {
    std::string message;
    for (const auto& error : loaded.errors) message += (message.empty() ? "" : "\n") + error.to_string();
    reply(management_error(message, kExitUsage));
    return;
  }
  Spec next = std::move(*loaded.spec);
  if (next.name != spec_.name) {
    reply(management_error(path + ": name: a running deployment's name cannot change (it is '" +
                               spec_.name + "')", kExitUsage));
    return;
  }
  if (auto problem = unsupported_feature(next)) {
    reply(management_error(*problem, kExitUsage));
    return;
  }
  // New or changed sockets are bound before anything changes, so a busy port rejects the reload.
  for (const auto& service : next.services) {
    const ServiceSpec* old = spec_.find_service(service.name);
    for (const auto& address : service.listen) {
      bool held = old && std::find(old->listen.begin(), old->listen.end(), address) != old->listen.end();
      if (held) continue;
      std::string error;
      auto probe = bind_listen_sockets({address}, &error);
      close_listen_sockets(probe);
      if (!error.empty()) {
        reply(management_error(error, kExitFailed));
        return;
      }
    }
  }
  spdlog::info("reloading {} from {}", spec_.name, path);
  sd_notify(0, "RELOADING=1");
  // systemd's reload protocol: RELOADING=1 now, READY=1 when done (whatever the outcome).
  auto shared_reply = std::make_shared<ManagementServer::Reply>(
      [this, reply = std::move(reply)](const json::Value& response) {
        reload_finished();
        reply(response);
      });
  auto shared_next = std::make_shared<Spec>(std::move(next));
  pre_start_ = std::make_unique<PreStartRunner>(
      io_, children_, shared_next->pre_start, print_pre_start_line,
      [this, shared_reply, shared_next](PreStartResult result) {
        asio::post(io_, [this] { pre_start_.reset(); });
        if (!result.ok) {
          std::string message = result.message + "; nothing was changed";
          for (const auto& line : result.last_lines) message += "\n  pre_start." + result.step + " | " + line;
          (*shared_reply)(management_error(message, kExitFailed));
          return;
        }
        if (phase_ != Phase::running) {
          (*shared_reply)(management_error("the deployment stopped during the reload", kExitFailed));
          return;
        }
        apply_reload(std::move(*shared_next), std::move(*shared_reply));
      });
  pre_start_->start();
}

void Supervisor::reload_finished() { sd_notify(0, "READY=1"); }

void Supervisor::apply_reload(Spec next, ManagementServer::Reply reply) {
  for (auto it = services_.begin(); it != services_.end();) {  // drop what earlier reloads removed
    it = it->second->removed && it->second->replicas.empty() ? services_.erase(it) : std::next(it);
  }
  SpecDiff diff = diff_specs(spec_, next);
  spec_ = std::move(next);
  std::vector<std::string> touched;
  for (const auto& name : diff.removed) {
    Service& service = *services_.at(name);
    spdlog::info("reload: removing service {}", name);
    service.removed = true;
    service.desired = 0;
    apply_scale(service);
  }
  for (const auto& service_spec : spec_.services) {
    const auto& name = service_spec.name;
    bool added = std::count(diff.added.begin(), diff.added.end(), name) > 0;
    bool rolled = std::count(diff.rolled.begin(), diff.rolled.end(), name) > 0;
    bool rescaled = std::count(diff.rescaled.begin(), diff.rescaled.end(), name) > 0;
    if (!added && !rolled && !rescaled) continue;
    touched.push_back(name);
    if (added) {
      spdlog::info("reload: adding service {}", name);
      std::string error;
      auto sockets = bind_listen_sockets(service_spec.listen, &error);
      Service& service = add_service(service_spec, std::move(sockets));
      apply_scale(service);
      continue;
    }
    Service& service = *services_.at(name);
    if (rolled) {
      // Sockets still listed keep their fds (and their queued connections); new ones are bound.
      std::vector<ListenSocket> sockets;
      for (const auto& address : service_spec.listen) {
        auto same = std::find_if(service.sockets.begin(), service.sockets.end(),
                                 [&](const ListenSocket& s) { return s.address == address; });
        if (same != service.sockets.end()) {
          sockets.push_back(*same);
          same->fd = -1;
        } else {
          std::string error;
          auto bound = bind_listen_sockets({address}, &error);
          sockets.insert(sockets.end(), bound.begin(), bound.end());
        }
      }
      close_listen_sockets(service.sockets);  // replicas keep their inherited copies
      service.sockets = std::move(sockets);
      spdlog::info("reload: {} changed; rolling its replicas", name);
      service.spec = std::make_shared<const ServiceSpec>(service_spec);
      service.desired = service_spec.replicas;
      ++service.generation;
      service.rollout.emplace();
    } else {
      spdlog::info("reload: {} scales to {}", name, service_spec.replicas);
      service.spec = std::make_shared<const ServiceSpec>(service_spec);
      service.desired = service_spec.replicas;
      apply_scale(service);
    }
  }
  persist_scale();
  std::vector<std::string> removed = diff.removed;
  waiters_.push_back({[this, touched, removed]() -> std::optional<json::Value> {
                        for (const auto& name : removed) {
                          auto it = services_.find(name);
                          if (it != services_.end() && !it->second->replicas.empty()) {
                            return std::nullopt;
                          }
                        }
                        for (const auto& name : touched) {
                          auto it = services_.find(name);
                          if (it == services_.end()) continue;  // removed by a later reload
                          auto result = settled(*it->second);
                          if (!result || !result->find("ok")->as_bool()) return result;
                        }
                        json::Value done;
                        done["ok"] = true;
                        return done;
                      },
                      std::move(reply)});
  after_events();
}

json::Value Supervisor::status_json() const {
  const auto now = Clock::now();
  json::Value status;
  status["name"] = spec_.name;
  status["pid"] = static_cast<long long>(getpid());
  status["state"] = phase_ == Phase::starting ? "starting"
                    : phase_ == Phase::running ? "running"
                                               : "stopping";
  status["uptime_ms"] = ms_between(started_at_, now);
  json::Array services;
  for (const auto& [name, service] : services_) {
    if (service->removed && service->replicas.empty()) continue;
    json::Value entry;
    entry["name"] = name;
    entry["desired"] = service->desired;
    json::Array listen;
    for (const auto& socket : service->sockets) listen.push_back(socket.address.text);
    entry["listen"] = std::move(listen);
    int ready = 0;
    json::Array replicas;
    for (const auto& [index, replica] : service->replicas) {
      const auto state = replica->machine.state();
      if (state == ReplicaState::ready) ++ready;
      json::Value r;
      r["id"] = replica->id;
      r["index"] = index;
      const bool alive = replica->pid > 0;
      r["pid"] = alive ? json::Value(static_cast<long long>(replica->pid)) : json::Value();
      r["state"] = state_name(state);
      Health health = service->spec->health.kind == HealthKind::none ? Health::none
                      : replica->health && state != ReplicaState::starting
                          ? replica->health->health()
                          : Health::unknown;
      r["health"] = health_name(health);
      r["uptime_ms"] = alive ? json::Value(ms_between(replica->spawned_at, now)) : json::Value();
      r["restarts"] = replica->machine.restarts();
      auto rss = alive ? resident_bytes(replica->pid) : std::nullopt;
      r["rss_bytes"] = rss ? json::Value(*rss) : json::Value();
      r["status"] = replica->status_text.empty() ? json::Value() : json::Value(replica->status_text);
      r["requests"] = replica->requests ? json::Value(*replica->requests) : json::Value();
      json::Value last_exit;
      if (const auto& exit = replica->last_exit) {
        last_exit["code"] = exit->status.code ? json::Value(*exit->status.code) : json::Value();
        last_exit["signal"] = exit->status.signal ? json::Value(*exit->status.signal) : json::Value();
        last_exit["reason"] = reason_name(exit->reason);
        last_exit["ago_ms"] = ms_between(exit->at, now);
        json::Array lines;
        for (const auto& line : exit->stderr_tail) lines.push_back(line);
        last_exit["stderr"] = std::move(lines);
      }
      r["last_exit"] = std::move(last_exit);
      replicas.push_back(std::move(r));
    }
    entry["ready"] = ready;
    entry["rollout"] = !service->rollout ? json::Value()
                       : service->rollout->state == Rollout::State::running ? "running"
                       : service->rollout->state == Rollout::State::done    ? "done"
                                                                                     : "failed";
    entry["replicas"] = std::move(replicas);
    services.push_back(std::move(entry));
  }
  status["services"] = std::move(services);
  return status;
}

// ---- persisted scale ------------------------------------------------------------------------

void Supervisor::load_persisted_scale() {
  std::ifstream file(paths_.scale);
  if (!file) return;
  std::stringstream text;
  text << file.rdbuf();
  auto saved = json::parse(text.str());
  if (!saved || !saved->is_object()) return;
  for (auto& [name, service] : services_) {
    const json::Value* entry = saved->find(name);
    if (!entry) continue;
    const json::Value* spec_count = entry->find("spec");
    const json::Value* desired = entry->find("desired");
    // A changed spec wins over a count set by hand for the old one.
    if (spec_count && desired && spec_count->as_int(-1) == service->spec->replicas) {
      service->desired = static_cast<int>(std::clamp<std::int64_t>(desired->as_int(0), 0, 1000));
    }
  }
}

void Supervisor::persist_scale() const {
  json::Value saved;
  for (const auto& [name, service] : services_) {
    json::Value entry;
    entry["spec"] = service->spec->replicas;
    entry["desired"] = service->desired;
    saved[name] = std::move(entry);
  }
  const std::string temporary = paths_.scale + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << json::dump(saved) << "\n";
    if (!file) return;
  }
  std::rename(temporary.c_str(), paths_.scale.c_str());
}

}  // namespace deployctl
