// Upgrade in place (docs/upgrade.md): the running supervisor checks the new binary, writes its
// state and re-executes itself; the new binary resumes from that state (resume()).
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "acme_carry.h"
#include "commands.h"
#include "dbus_api.h"
#include "deployment_state_json.h"
#include "load.h"
#include "log_writer.h"
#include "pre_start.h"
#include "read_file.h"
#include "supervisor_state.h"
#include "upgrade.h"
#include "version.h"

namespace deployctl {

namespace asio = boost::asio;

namespace {

// Signals that must not act between the exec and the new binary's handlers: blocked before
// the exec (the mask and what is pending survive it), unblocked once the handlers are set.
sigset_t exec_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGUSR2, SIGCHLD}) sigaddset(&set, signal);
  return set;
}

long long steady_ns(TimePoint at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

int fd_of(const std::unique_ptr<asio::posix::stream_descriptor>& descriptor) {
  return descriptor && descriptor->is_open() ? descriptor->native_handle() : -1;
}

std::unique_ptr<asio::posix::stream_descriptor> adopt_fd(asio::io_context& io, long long fd) {
  if (fd < 0) return nullptr;
  auto descriptor = std::make_unique<asio::posix::stream_descriptor>(io, static_cast<int>(fd));
  boost::system::error_code ignored;
  descriptor->non_blocking(true, ignored);
  return descriptor;
}

json::Array strings(const auto& values) {
  json::Array array;
  for (const auto& value : values) array.push_back(value);
  return array;
}

}  // namespace

void Supervisor::unblock_exec_signals() {
  sigset_t set = exec_signals();
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

// Why an upgrade cannot happen now ("" if it can). Only a quiet deployment is carried: no
// request, rollout or reload under way, every replica ready (no core timer is armed then).
std::string Supervisor::upgrade_refusal() const {
  const DeploymentState& state = core_.state();
  if (state.phase != Phase::running) {
    return std::string("the deployment is ") + phase_name(state.phase) + "; try again once it runs";
  }
  if (!requests_.empty() || !reloads_.empty() || pre_start_ || core_.rollout_running()) {
    return "another command is under way; try again";
  }
  if (auto acme = acme_upgrade_refusal(); !acme.empty()) return acme;
  for (const auto& [name, service] : state.services) {
    for (const auto& [index, record] : service.replicas) {
      if (record.machine.state != ReplicaState::ready) {
        return record.id + " is " + state_name(record.machine.state) +
               "; try again once every replica is ready";
      }
    }
  }
  return "";
}

// The state document (upgrade.h) and, in *fds, every fd it names (they must survive the exec).
std::optional<json::Value> Supervisor::upgrade_state(const std::string& binary,
                                                     std::vector<int>* fds,
                                                     std::string* error) const {
  FileRead file = read_file(spec_.path, kMaxSpecBytes);
  LoadResult reread = file.ok() ? parse_spec(file.text, spec_.path) : LoadResult{};
  if (!reread.spec || reread.spec->name != spec_.name || reread.spec->services != spec_.services) {
    *error = "the spec file " + spec_.path + " changed since it was applied; reload it first";
    return std::nullopt;
  }
  json::Value doc;
  doc["format"] = kUpgradeStateFormat;
  doc["from_version"] = deployctl_version();
  doc["executable"] = binary;
  doc["spec_path"] = spec_.path;
  doc["spec_text"] = file.text;
  doc["paths"] = {{"dir", paths_.dir},  {"socket", paths_.socket}, {"lock", paths_.lock},
                  {"pid", paths_.pid},  {"log", paths_.log},       {"scale", paths_.scale},
                  {"logs", paths_.logs}};
  doc["detached"] = upgrade_.detached;
  doc["dbus"] = dbus_enabled_;
  doc["lock_fd"] = upgrade_.lock_fd;
  doc["child_fd_limit"] =
      child_fd_limit_soft() ? json::Value(*child_fd_limit_soft()) : json::Value();
  doc["management_fd"] = management_->native_fd();
  doc["upgrades"] = upgrade_.upgrades;
  doc["upgrade_failures"] = upgrade_.upgrade_failures;
  doc["upgrade_error"] = upgrade_.upgrade_error;
  doc["core"] = to_json(core_.state());
  doc["keeper_fd"] = keeper_ ? keeper_->fd() : -1;
  doc["keeper_pid"] = keeper_ ? keeper_->pid() : -1;
  doc["memory"] = memory_setup_json();
  doc["tree_cgroup_dir"] = tree_cgroups_.dir();
  fds->assign({upgrade_.lock_fd, management_->native_fd(), keeper_ ? keeper_->fd() : -1});
  doc["acme"] = acme_upgrade_state(fds);  // appends the http_listen sockets
  json::Value services = json::Value::object();
  for (const auto& [name, service] : services_) {
    json::Array sockets;
    for (const auto& socket : service->sockets) {
      sockets.push_back(socket.fd);
      fds->push_back(socket.fd);
    }
    services[name] = std::move(sockets);
  }
  doc["services"] = std::move(services);
  const CarriedGroups groups = replica_socket_groups();  // in group order: the steering's key
  for (const auto& [name, addresses] : groups) {
    for (const auto& [text, sockets] : addresses) {
      for (const auto& socket : sockets) fds->push_back(socket.fd);
    }
  }
  doc["replica_sockets"] = carried_groups_json(groups, true);
  doc["keeper_confirms_drops"] = true;  // FdKeeper::drop_now
  json::Array replicas;
  for (const auto& [serial, replica] : replicas_) {
    if (replica->pid <= 0) continue;
    json::Value r;
    r["serial"] = serial;
    r["pid"] = replica->pid;
    r["run"] = replica->run;
    r["spawned_at_ns"] = steady_ns(replica->spawned_at);
    r["control_fd"] = fd_of(replica->control);
    r["notify_fd"] = fd_of(replica->notify);
    r["out_fd"] = fd_of(replica->out.fd);
    r["err_fd"] = fd_of(replica->err.fd);
    r["pidfd"] = fd_of(replica->pidfd);  // adopted after a crash: not our child
    for (int fd : {fd_of(replica->control), fd_of(replica->notify), fd_of(replica->out.fd),
                   fd_of(replica->err.fd), fd_of(replica->pidfd)}) {
      fds->push_back(fd);
    }
    r["speaks_control"] = replica->speaks_control;
    r["status_text"] = replica->status_text;
    r["requests"] = replica->requests ? json::Value(*replica->requests) : json::Value();
    r["env"] = strings(replica->env);
    r["stderr_tail"] = strings(replica->stderr_tail);
    r["memory"] = replica_memory_json(*replica);
    replicas.push_back(std::move(r));
  }
  doc["replicas"] = std::move(replicas);
  return doc;
}

void Supervisor::upgrade_failed(const std::string& message) {
  ++upgrade_.upgrade_failures;
  upgrade_.upgrade_error = message;
  spdlog::error("upgrade failed: {}; this binary keeps running", message);
}

// Checks the new binary (it runs; it reads this state), answers the request, then execs.
void Supervisor::handle_upgrade(std::string binary, ManagementServer::Reply reply) {
  auto refuse = [&](const std::string& message, int code) {
    upgrade_failed(message);
    reply(management_error("upgrade refused: " + message, code));
  };
  if (auto refusal = upgrade_refusal(); !refusal.empty()) return refuse(refusal, kExitBusy);
  if (binary.empty()) binary = upgrade_.executable;
  if (binary.empty() || binary[0] != '/' || access(binary.c_str(), X_OK) != 0) {
    return refuse("the new binary '" + binary + "' is not an executable absolute path",
                  kExitFailed);
  }
  spdlog::info("upgrade: checking {}", binary);
  CheckResult version = run_check({binary, "--version"}, kUpgradeCheckTimeout);
  if (!version.ok) return refuse(binary + " --version failed: " + version.output, kExitFailed);
  std::vector<int> fds;
  std::string error;
  auto doc = upgrade_state(binary, &fds, &error);
  if (!doc) return refuse(error, kExitFailed);
  int state_fd = write_state_fd(json::dump(*doc), &error);
  if (state_fd < 0) return refuse(error, kExitFailed);
  CheckResult check = run_check({binary, "upgrade-check", "--state-fd", std::to_string(state_fd),
                                 "--state-version", std::to_string(kUpgradeStateFormat)},
                                kUpgradeCheckTimeout, state_fd);
  close(state_fd);
  if (!check.ok) {
    return refuse(binary + " cannot take over this supervisor's state: " + check.output,
                  kExitFailed);
  }
  json::Value done;
  done["ok"] = true;
  done["pid"] = static_cast<long long>(getpid());
  done["version"] = version.output;
  done["upgrades"] = upgrade_.upgrades;
  done["upgrade_failures"] = upgrade_.upgrade_failures;
  reply(done);
  exec_when_replies_sent(binary, 100);
}

// The answer must reach the CLI before the exec closes its connection (10 ms polls, bounded).
void Supervisor::exec_when_replies_sent(const std::string& binary, int tries_left) {
  if (management_->pending_replies() == 0 || tries_left == 0) {
    asio::post(io_, [this, binary] { exec_upgrade(binary, 10); });
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(10));
  timer->async_wait([this, timer, binary, tries_left](boost::system::error_code) {
    exec_when_replies_sent(binary, tries_left - 1);
  });
}

void Supervisor::exec_upgrade(const std::string& binary, int tries_left) {
  // Events that arrived since the checks (an exit, a request) may have made it unsafe; queued
  // ones are handled first (the queue's run was posted before this).
  if (auto refusal = upgrade_refusal(); !refusal.empty()) {
    return upgrade_failed("abandoned: " + refusal);
  }
  if (!queue_.empty()) {
    if (tries_left == 0) return upgrade_failed("abandoned: events keep arriving; try again");
    asio::post(io_, [this, binary, tries_left] { exec_upgrade(binary, tries_left - 1); });
    return;
  }
  std::vector<int> fds;
  std::string error;
  auto doc = upgrade_state(binary, &fds, &error);
  if (!doc) return upgrade_failed(error);
  // What is not a complete line yet is carried too: a line is never split by the exec.
  json::Value& replicas = (*doc)["replicas"];
  for (auto& r : replicas) {
    auto& replica = *replicas_.at(json::as_int(json::get(r, "serial")));
    r["out_rest"] = replica.out.splitter.take_rest();
    r["err_rest"] = replica.err.splitter.take_rest();
  }
  const int previous = open("/proc/self/exe", O_RDONLY);  // the fallback if resuming fails
  fds.push_back(previous);
  int state_fd = write_state_fd(json::dump(*doc), &error);
  if (state_fd < 0) {
    if (previous >= 0) close(previous);
    return upgrade_failed(error);
  }
  spdlog::info("upgrade: re-executing {} (pid {}, {} replicas carried)", binary, getpid(),
               replicas.size());
  logs_.reset();  // flushes every queued replica line
  dbus_.reset();  // releases the bus name for the new binary
  spdlog::default_logger()->flush();
  sigset_t block = exec_signals();
  sigprocmask(SIG_BLOCK, &block, nullptr);
  set_cloexec(fds, false);
  const std::string fd_text = std::to_string(state_fd), previous_text = std::to_string(previous);
  const char* argv[] = {binary.c_str(),  "resume",           "--state-fd",
                        fd_text.c_str(), "--previous-exe-fd", previous_text.c_str(),
                        nullptr};
  execv(binary.c_str(), const_cast<char* const*>(argv));
  const int exec_errno = errno;
  set_cloexec(fds, true);
  close(state_fd);
  if (previous >= 0) close(previous);
  for (auto& r : replicas) {  // give the partial lines back
    auto& replica = *replicas_.at(json::as_int(json::get(r, "serial")));
    std::vector<std::string> none;
    replica.out.splitter.feed(json::as_string(json::get(r, "out_rest")), &none);
    replica.err.splitter.feed(json::as_string(json::get(r, "err_rest")), &none);
  }
  unblock_exec_signals();
  open_logs();
  start_dbus();
  upgrade_failed("cannot execute " + binary + ": " + std::strerror(exec_errno));
}

// The new binary's side: the process, its children and fds are the same; the event loop, the
// edges' handlers and the daemon's objects are rebuilt from the carried state.
bool Supervisor::resume(const CarriedState& carried, std::string* error) {
  const json::Value& doc = carried.doc;
  core_ = Deployment(carried.core);
  upgrade_.upgrades = static_cast<int>(json::as_int(json::get(doc, "upgrades")));
  upgrade_.upgrade_failures = static_cast<int>(json::as_int(json::get(doc, "upgrade_failures")));
  upgrade_.upgrade_error = json::as_string(json::get(doc, "upgrade_error"));
  make_management();
  resume_tree_cgroups(json::as_string(json::get(doc, "tree_cgroup_dir")));
  resume_memory(json::find(doc, "memory"));  // before the replicas take up their cgroups
  adopt_replica_sockets(carried_groups_from_json(json::get(doc, "replica_sockets")));
  if (!management_->adopt(static_cast<int>(json::as_int(json::get(doc, "management_fd"))), error)) {
    return false;
  }
  for (const auto& r : json::as_array(json::get(doc, "replicas"))) {
    const auto serial = static_cast<std::uint64_t>(json::as_int(json::get(r, "serial")));
    auto replica = core_.replica(serial) ? runtime(serial) : nullptr;
    if (!replica) {
      *error = "replica " + std::to_string(serial) + " is not in the core's state";
      return false;
    }
    replica->pid = static_cast<pid_t>(json::as_int(json::get(r, "pid")));
    replica->run = static_cast<std::uint64_t>(json::as_int(json::get(r, "run")));
    replica->spawned_at =
        TimePoint(std::chrono::nanoseconds(json::as_int(json::get(r, "spawned_at_ns"))));
    replica->control = adopt_fd(io_, json::as_int(json::get(r, "control_fd")));
    replica->notify = adopt_fd(io_, json::as_int(json::get(r, "notify_fd")));
    replica->out.fd = adopt_fd(io_, json::as_int(json::get(r, "out_fd")));
    replica->err.fd = adopt_fd(io_, json::as_int(json::get(r, "err_fd")));
    replica->speaks_control = json::as_bool(json::get(r, "speaks_control"));
    replica->status_text = json::as_string(json::get(r, "status_text"));
    if (const auto* requests = json::find(r, "requests"); requests && requests->is_number()) {
      replica->requests = static_cast<std::uint64_t>(json::as_int(*requests));
    }
    for (const auto& entry : json::as_array(json::get(r, "env")))
      replica->env.push_back(json::as_string(entry));
    for (const auto& line : json::as_array(json::get(r, "stderr_tail"))) {
      replica->stderr_tail.push_back(json::as_string(line));
    }
    std::vector<std::string> none;
    replica->out.splitter.feed(json::as_string(json::get(r, "out_rest")), &none);
    replica->err.splitter.feed(json::as_string(json::get(r, "err_rest")), &none);
    if (replica->spec->health.kind != HealthKind::none) {
      replica->health.emplace(replica->spec->health);
      replica->health->start(time_.now());
      schedule_health(replica);
    }
    adopt_tree_cgroup(replica);
    adopt_memory(replica, json::find(r, "memory"));
    replica->pidfd = adopt_fd(io_, json::as_int(json::get(r, "pidfd"), -1));
    if (replica->pidfd) {
      watch_adopted(replica);
    } else {
      children_.watch(
          replica->pid, [this, replica](int wait_status) { on_replica_exit(replica, wait_status); },
          /*kill_group=*/true);
    }
    read_control(replica);
    read_notify(replica);
    read_output(replica, replica->out);
    read_output(replica, replica->err);
  }
  if (const auto keeper = json::as_int(json::get(doc, "keeper_fd"), -1); keeper >= 0) {
    keeper_ = FdKeeper::adopt(static_cast<int>(keeper),
                              static_cast<pid_t>(json::as_int(json::get(doc, "keeper_pid"))));
    if (!json::as_bool(json::get(doc, "keeper_confirms_drops"))) {
      keeper_->quit();  // a keeper of an older binary: replaced by one that confirms drops
      start_keeper();
    }
  } else {
    start_keeper();  // the previous binary had none
  }
  watch_signals();
  unblock_exec_signals();
  watchdog_ping();
  start_dbus();
  // The acme services' sockets, listeners and schedules (before start_tls, as in start()). A
  // binary before this carried none: its listener keeps the http_listen socket, not ours to bind.
  if (const auto* acme = json::find(doc, "acme")) {
    if (!start_acme(error, acme_carried_from_json(*acme))) return false;
  } else {
    spdlog::warn("the previous binary did not carry ACME: no renewals until a restart");
  }
  start_tls();  // watches the certificate files again; new replicas get a fresh ticket key
  if (std::string metrics_error; !start_metrics(&metrics_error)) {
    spdlog::warn("after the upgrade: {}", metrics_error);  // the old binary's socket closed at exec
  }
  children_.reap();   // replicas that exited during the exec: restarted by policy
  record_replicas();  // the keeper in step at once (an adopted one is sent everything again)
  notify_status();
  return true;
}

void Supervisor::note_resumed(const std::string& rolled_back) {
  if (!rolled_back.empty()) {
    upgrade_failed("the new binary could not resume: " + rolled_back);
    return;
  }
  ++upgrade_.upgrades;
  spdlog::info("upgrade: deployctl {} resumed {} (pid {}, {} replicas)", deployctl_version(),
               spec_.name, getpid(), replicas_.size());
}

json::Value Supervisor::supervisor_json() const {
  json::Value s;
  s["version"] = deployctl_version();
  s["executable"] = upgrade_.executable;
  s["upgrades"] = upgrade_.upgrades;
  s["upgrade_failures"] = upgrade_.upgrade_failures;
  s["upgrade_error"] =
      upgrade_.upgrade_error.empty() ? json::Value() : json::Value(upgrade_.upgrade_error);
  return s;
}

}  // namespace deployctl
