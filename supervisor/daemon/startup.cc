#include "startup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sstream>

#include "commands.h"
#include "crash_adoption.h"
#include "detached_log.h"
#include "fd_budget.h"
#include "fd_limit.h"
#include "journal_log.h"
#include "leftovers.h"
#include "listen_sockets.h"
#include "log_writer.h"
#include "paths.h"
#include "pre_start.h"
#include "read_file.h"
#include "supervisor.h"
#include "upgrade.h"

namespace deployctl {
namespace {

void setup_logging(std::shared_ptr<spdlog::logger> logger = spdlog::stderr_color_mt("deployctl")) {
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  if (stderr_is_journal()) use_journal_format(*logger);  // false once fd 2 is a detached log
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// The pid file always holds a live pid while the lock is held: it is written (atomically, by
// rename) right after the lock is taken, and again by the detached supervisor.
void write_pid_file(const std::string& path) {
  const std::string temporary = path + ".new";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << getpid() << "\n";
  }
  std::rename(temporary.c_str(), path.c_str());
}

// The running supervisor's pid; an `up` that took the lock an instant ago may not have
// written it yet, so this waits up to a second for it.
std::string read_pid_file(const std::string& path) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::istringstream text(read_file(path, kMaxStateBytes).text);
    std::string pid;
    text >> pid;
    if (!pid.empty()) return pid;
    usleep(20 * 1000);
  }
  return "unknown: no pid file " + path;
}

// Runs the pre-start steps in order, in the foreground, before any replica starts. Ctrl+C
// cancels the running step (its whole group is killed). False if a step failed. *outcomes: the
// steps that ran (for the metrics).
bool run_pre_start(const std::vector<PreStartStep>& steps, const LogSettings& log_settings,
                   std::vector<PreStartOutcome>* outcomes) {
  if (steps.empty()) return true;
  LogWriter log(log_settings);  // joined before returning: `up -d` forks next
  auto on_line = [&log](const std::string& step, const std::string& line, bool is_stderr) {
    print_pre_start_line(step, line, is_stderr);
    log.pre_start_line(step, line, is_stderr);
  };
  boost::asio::io_context io;
  ChildWatcher children(io);
  PreStartResult result;
  PreStartRunner runner(io, children, steps, on_line, [&](PreStartResult done) {
    result = std::move(done);
    io.stop();
  });
  boost::asio::signal_set interrupts(io, SIGINT, SIGTERM);
  interrupts.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) runner.cancel();
  });
  runner.start();
  io.run();
  *outcomes = result.steps;
  if (result.ok) return true;
  std::fprintf(stderr, "deployctl: %s; no replica was started\n", result.message.c_str());
  if (!result.last_lines.empty()) {
    std::fprintf(stderr, "last lines of its output:\n");
    for (const auto& line : result.last_lines) {
      std::fprintf(stderr, "  pre_start.%s | %s\n", result.step.c_str(), line.c_str());
    }
  }
  return false;
}

// Detaches into the background. In the parent: waits for the supervisor's first word and
// returns the exit code to end with. In the child: returns nullopt and sets *notify_fd.
std::optional<int> detach(const StatePaths& paths, int* notify_fd) {
  int notify[2];
  if (pipe2(notify, O_CLOEXEC) != 0) {
    std::perror("deployctl: pipe");
    return kExitFailed;
  }
  pid_t child = fork();
  if (child < 0) {
    std::perror("deployctl: fork");
    return kExitFailed;
  }
  if (child > 0) {
    close(notify[1]);
    std::string message;
    char buffer[4096];
    ssize_t n;
    while ((n = read(notify[0], buffer, sizeof buffer)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      message.append(buffer, static_cast<std::size_t>(n));
    }
    close(notify[0]);
    if (message.empty()) {
      std::fprintf(stderr, "deployctl: the supervisor exited while starting; see %s\n",
                   paths.log.c_str());
      return kExitFailed;
    }
    bool ok = message[0] == '0';
    std::fprintf(ok ? stdout : stderr, "%s\n", message.c_str() + 1);
    return ok ? kExitOk : kExitFailed;
  }
  close(notify[0]);
  setsid();
  redirect_to_detached_log(paths.log);
  set_terminal_echo(false);  // replica output goes to the service logs only
  *notify_fd = notify[1];
  return std::nullopt;
}

// Replicas a supervisor of this deployment left when it died (leftovers.h) are stopped before
// anything binds or starts: nothing survives by accident, and their sockets are freed.
bool stop_leftovers_of(const Spec& spec, const StatePaths& paths) {
  const std::string record = replica_record_path(paths.dir);
  auto leftovers = find_leftovers(record);
  if (leftovers.empty()) {
    unlink(record.c_str());
    return true;
  }
  std::fprintf(stderr, "deployctl: %s: a previous supervisor died and left %s running; stopping them\n",
               spec.name.c_str(), describe_leftovers(leftovers).c_str());
  Duration grace{0};
  for (const auto& service : spec.services) grace = std::max(grace, service.stop.timeout);
  auto survivors = stop_leftovers(record, leftovers, grace);
  if (survivors.empty()) return true;
  std::fprintf(stderr, "deployctl: %s: cannot stop %s; nothing was started\n", spec.name.c_str(),
               describe_leftovers(survivors).c_str());
  return false;
}

}  // namespace

int run_up(const Spec& loaded, const UpOptions& options) {
  auto spec = &loaded;
  const std::uint64_t fd_limit = raise_fd_limit();
  if (auto error = fd_limit_error("the spec", fds_needed(*spec), fd_limit)) {
    std::fprintf(stderr, "deployctl: %s; nothing was started\n", error->c_str());
    return kExitFailed;
  }
  StatePaths paths = state_paths(runtime_base(options.runtime_dir), spec->name);
  paths.logs = log_dir_for(options.log_dir, options.runtime_dir, &spec->logs, spec->name, paths.dir);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(paths.dir).parent_path(), ec);
  if (mkdir(paths.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "deployctl: cannot create %s: %s\n", paths.dir.c_str(), std::strerror(errno));
    return kExitFailed;
  }
  int lock = open(paths.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0) {
    std::fprintf(stderr, "deployctl: cannot open %s: %s\n", paths.lock.c_str(), std::strerror(errno));
    return kExitFailed;
  }
  if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
    std::fprintf(stderr, "deployctl: %s is already running (pid %s); see 'deployctl status --name %s'\n",
                 spec->name.c_str(), read_pid_file(paths.pid).c_str(), spec->name.c_str());
    return kExitAlreadyRunning;
  }
  write_pid_file(paths.pid);
  auto failed = [&paths] {
    unlink(paths.pid.c_str());
    return kExitFailed;
  };
  std::string why_not;
  std::optional<Adoption> adoption = take_over(*spec, paths, &why_not);
  if (!adoption && !why_not.empty()) {
    std::fprintf(stderr, "deployctl: %s: cannot adopt the replicas of the crashed supervisor: %s\n",
                 spec->name.c_str(), why_not.c_str());
  }
  if (!adoption && !stop_leftovers_of(*spec, paths)) return failed();
  std::map<std::string, std::vector<ListenSocket>> listen;
  if (adoption) listen = std::move(adoption->listen);
  for (const auto& service : adoption ? std::vector<ServiceSpec>{} : spec->services) {
    std::string error;
    if (service.sockets == SocketMode::per_replica) {
      // Its replicas bind their own sockets at spawn; a busy address fails `up` here already.
      const int fd = bind_listen_socket(service.listen.front(), true, &error);
      if (fd >= 0) close(fd);
    } else {
      listen[service.name] = bind_listen_sockets(service.listen, &error);
    }
    if (!error.empty()) {
      std::fprintf(stderr, "deployctl: %s: %s\n", service.name.c_str(), error.c_str());
      for (auto& [name, sockets] : listen) close_listen_sockets(sockets);
      return failed();
    }
  }
  setup_logging();
  std::vector<PreStartOutcome> pre_start;
  if (!adoption &&
      !run_pre_start(spec->pre_start, {paths.logs, {spec->logs.max_size, spec->logs.keep}, false},
                     &pre_start)) {
    for (auto& [name, sockets] : listen) close_listen_sockets(sockets);
    return failed();
  }
  int notify_fd = -1;
  if (options.detach) {
    if (auto parent_exit = detach(paths, &notify_fd)) return *parent_exit;
    spdlog::drop_all();  // log to STATE/supervisor.log from now on, capped, without colors
    setup_logging(make_detached_logger("deployctl", paths.log));
  }
  if (options.detach) write_pid_file(paths.pid);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);

  auto on_started = [notify_fd](bool ok, const std::string& message) {
    if (notify_fd < 0) return;
    std::string word = (ok ? "0" : "1") + message;
    ssize_t ignored = write(notify_fd, word.data(), word.size());
    (void)ignored;
    close(notify_fd);
  };
  boost::asio::io_context io;
  Supervisor supervisor(io, *spec, std::move(listen), paths, on_started);
  supervisor.set_dbus_enabled(options.dbus);
  supervisor.record_pre_start(pre_start);
  supervisor.set_upgrade_context({.executable = current_executable(), .lock_fd = lock,
                                  .detached = options.detach});
  std::string error;
  if (adoption ? !supervisor.adopt(std::move(*adoption), &error) : !supervisor.start(&error)) {
    spdlog::error("{}", error);
    on_started(false, error);
    return failed();
  }
  io.run();
  unlink(paths.pid.c_str());
  if (supervisor.stopped_by_request()) unlink(paths.scale.c_str());
  return supervisor.exit_code();
}

namespace {

// The listen sockets the state carries, paired with the spec's addresses in order.
std::optional<std::map<std::string, std::vector<ListenSocket>>> carried_sockets(
    const CarriedState& carried, std::string* error) {
  std::map<std::string, std::vector<ListenSocket>> listen;
  const json::Value& services = json::get(carried.doc, "services");
  for (const auto& service : carried.spec.services) {
    const json::Value& fds = json::get(services, service.name);
    const std::size_t shared =  // per-replica sockets are carried apart ("replica_sockets")
        service.sockets == SocketMode::per_replica ? 0 : service.listen.size();
    if (!fds.is_array() || fds.size() != shared) {
      *error = "the listen sockets of " + service.name + " do not match its spec";
      return std::nullopt;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      const int fd = static_cast<int>(json::as_int(fds[i], -1));
      listen[service.name].push_back({service.listen[i], fd});
    }
  }
  return listen;
}

// The new binary could not take over: the previous one (still open as `previous_fd`) resumes
// from the same state, told why.
[[noreturn]] void roll_back(const std::optional<CarriedState>& carried, int previous_fd,
                            int state_fd, const std::string& why) {
  spdlog::error("upgrade: cannot resume here: {}; going back to the previous binary", why);
  spdlog::default_logger()->flush();
  if (carried) set_cloexec(carried_fds(carried->doc), false);  // resume() may have set some
  const std::string fd_text = std::to_string(state_fd);
  const char* argv[] = {"deployctl", "resume", "--state-fd", fd_text.c_str(), "--rolled-back",
                        why.c_str(), nullptr};
  if (previous_fd >= 0) {
    fcntl(previous_fd, F_SETFD, FD_CLOEXEC);  // an ELF binary: closed once loaded
    fexecve(previous_fd, const_cast<char* const*>(argv), environ);
  }
  spdlog::critical("upgrade: cannot go back to the previous binary: {}", std::strerror(errno));
  _exit(kExitFailed);
}

}  // namespace

int run_resumed(const ResumeArguments& arguments) {
  const int state_fd = arguments.state_fd;
  const int previous = arguments.previous_exe_fd;
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string error = "cannot read the state from fd " + std::to_string(state_fd);
  auto text = read_state_fd(state_fd);
  auto carried = text ? decode_state(*text, &error) : std::nullopt;
  const json::Value& p = carried ? json::get(carried->doc, "paths") : json::Value();
  StatePaths paths{json::as_string(json::get(p, "dir")),   json::as_string(json::get(p, "socket")),
                   json::as_string(json::get(p, "lock")),  json::as_string(json::get(p, "pid")),
                   json::as_string(json::get(p, "log")),   json::as_string(json::get(p, "scale")),
                   json::as_string(json::get(p, "logs"))};
  const bool detached = carried && json::as_bool(json::get(carried->doc, "detached"));
  setup_logging(detached ? make_detached_logger("deployctl", paths.log)
                         : spdlog::stderr_color_mt("deployctl"));
  if (!carried) roll_back(carried, previous, state_fd, error);
  auto listen = carried_sockets(*carried, &error);
  if (!listen) roll_back(carried, previous, state_fd, error);
  if (const auto* limit = json::find(carried->doc, "child_fd_limit"); limit && limit->is_number()) {
    set_child_fd_limit(static_cast<std::uint64_t>(json::as_int(*limit)));
  }
  const int lock = static_cast<int>(json::as_int(json::get(carried->doc, "lock_fd"), -1));
  boost::asio::io_context io;
  Supervisor supervisor(io, carried->spec, std::move(*listen), paths, nullptr);
  supervisor.set_dbus_enabled(json::as_bool(json::get(carried->doc, "dbus"), true));
  UpgradeContext context{.executable = json::as_string(json::get(carried->doc, "executable")),
                         .lock_fd = lock,
                         .detached = detached};
  supervisor.set_upgrade_context(context);
  if (!supervisor.resume(*carried, &error)) roll_back(carried, previous, state_fd, error);
  supervisor.note_resumed(arguments.rolled_back);
  set_cloexec(carried_fds(carried->doc), true);  // none leaks into replicas spawned from now on
  if (previous >= 0) close(previous);
  close(state_fd);
  io.run();
  unlink(paths.pid.c_str());
  if (supervisor.stopped_by_request()) unlink(paths.scale.c_str());
  return supervisor.exit_code();
}

}  // namespace deployctl
