#include "cli.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "commands.h"
#include "export_command.h"
#include "load.h"
#include "log_command.h"
#include "log_writer.h"
#include "management.h"
#include "paths.h"
#include "process.h"
#include "pre_start.h"
#include "supervisor.h"

#ifndef DEPLOYCTL_VERSION
#define DEPLOYCTL_VERSION "0.0.0"
#endif

namespace deployctl {
namespace {

struct Options {
  std::string command;
  std::string file = "deploy.toml";
  std::string name;
  std::string runtime_dir;
  bool detach = false;
  bool dbus = true;  // up: export the D-Bus API
  bool json = false;
  std::vector<std::pair<std::string, int>> counts;
  std::vector<std::string> services;  // restart
  std::string log_dir;
  LogsRequest logs;  // logs
};

void print_help() {
  std::printf("deployctl %s: run and supervise the replicas of a deployment\n\nusage:\n",
              DEPLOYCTL_VERSION);
  for (const auto& command : commands()) {
    std::printf("  deployctl %-58s %s\n", std::string(command.usage).c_str(),
                std::string(command.summary).c_str());
  }
  std::printf(
      "\noptions for every command:\n"
      "  --runtime-dir DIR   state directories live in DIR/NAME (also DEPLOYCTL_RUNTIME_DIR)\n"
      "  --log-dir DIR       log files live in DIR/NAME (also DEPLOYCTL_LOG_DIR; docs/logs.md)\n"
      "  -h, --help          this help;   --version   the version\n\n"
      "exit codes: 0 ok, 1 failed, 2 usage or invalid spec, 3 not running, 4 already running,\n"
      "5 permission denied. See docs/cli.md.\n");
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "deployctl: %s\nrun 'deployctl help' for usage\n", message.c_str());
  return kExitUsage;
}

// Returns an exit code if parsing ends the program (help, errors), else nullopt.
std::optional<int> parse_args(int argc, char** argv, Options* options) {
  bool file_given = false;
  auto value_of = [&](int& i, std::string_view flag) -> std::optional<std::string> {
    std::string_view arg = argv[i];
    if (arg.size() > flag.size() && arg[flag.size()] == '=') return std::string(arg.substr(flag.size() + 1));
    if (i + 1 >= argc) return std::nullopt;
    return std::string(argv[++i]);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto flag_is = [&](std::string_view flag) {
      return arg == flag || (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
                             arg[flag.size()] == '=');
    };
    if (arg == "-h" || arg == "--help") {
      print_help();
      return kExitOk;
    } else if (arg == "--version") {
      std::printf("deployctl %s\n", DEPLOYCTL_VERSION);
      return kExitOk;
    } else if (options->command == "logs" && (arg == "-f" || arg == "--follow")) {
      options->logs.follow = true;
    } else if (options->command == "logs" && (arg == "-n" || flag_is("--lines"))) {
      auto value = value_of(i, arg == "-n" ? "-n" : "--lines");
      std::size_t lines = 0;
      const std::string text = value.value_or("");
      auto parsed = std::from_chars(text.data(), text.data() + text.size(), lines);
      if (text.empty() || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size()) {
        return usage_error("-n needs a number of lines, e.g. -n 50");
      }
      options->logs.lines = lines;
    } else if (options->command == "logs" && arg.size() > 0 && arg[0] != '-' &&
               arg.find('/') == std::string_view::npos &&
               !(arg.size() > 5 && arg.substr(arg.size() - 5) == ".toml")) {
      if (!options->logs.selector.empty()) {
        return usage_error("logs takes one SERVICE[.N], got '" + options->logs.selector +
                           "' and '" + std::string(arg) + "'");
      }
      options->logs.selector = arg;
    } else if (arg == "-d" || arg == "--detach") {
      options->detach = true;
    } else if (arg == "--no-dbus") {
      options->dbus = false;
    } else if (arg == "--json") {
      options->json = true;
    } else if (flag_is("--runtime-dir") || flag_is("--log-dir") || flag_is("--name") ||
               flag_is("--file") || arg == "-f") {
      std::string_view flag = arg == "-f" ? "-f" : arg.substr(0, arg.find('='));
      auto value = value_of(i, flag);
      if (!value || value->empty()) return usage_error(std::string(flag) + " needs a value");
      if (flag == "--runtime-dir") options->runtime_dir = *value;
      if (flag == "--log-dir") options->log_dir = *value;
      if (flag == "--name") options->name = *value;
      if (flag == "--file" || flag == "-f") {
        options->file = *value;
        file_given = true;
      }
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("unknown option '" + std::string(arg) + "'");
    } else if (options->command.empty()) {
      options->command = arg;
    } else if (options->command == "scale" && arg.find('=') != std::string_view::npos) {
      auto eq = arg.find('=');
      int count = -1;
      auto number = arg.substr(eq + 1);
      auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), count);
      if (eq == 0 || ec != std::errc() || end != number.data() + number.size() || count < 0) {
        return usage_error("expected SERVICE=N with N >= 0, got '" + std::string(arg) + "'");
      }
      options->counts.emplace_back(std::string(arg.substr(0, eq)), count);
    } else if (options->command == "restart") {
      options->services.emplace_back(arg);
    } else if (!file_given) {
      options->file = arg;
      file_given = true;
    } else {
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
  }
  if (options->command.empty() || options->command == "help") {
    print_help();
    return options->command.empty() ? kExitUsage : kExitOk;
  }
  if (!find_command(options->command)) {
    return usage_error("unknown command '" + options->command + "'");
  }
  if (options->command == "scale" && options->counts.empty()) {
    return usage_error("scale needs at least one SERVICE=N");
  }
  return std::nullopt;
}

std::optional<Spec> load_or_report(const std::string& file) {
  LoadResult loaded = load_spec_file(file);
  for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
  return loaded.spec;
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("deployctl");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

std::string read_pid_file(const std::string& path) {
  std::ifstream file(path);
  std::string pid;
  file >> pid;
  return pid.empty() ? "?" : pid;
}

// Runs the pre-start steps in order, in the foreground, before any replica starts. Ctrl+C
// cancels the running step (its whole group is killed). False if a step failed.
bool run_pre_start(const std::vector<PreStartStep>& steps, const LogSettings& log_settings) {
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
  int log = open(paths.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log >= 0) {
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    close(log);
  }
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    close(null);
  }
  *notify_fd = notify[1];
  return std::nullopt;
}

int run_up(const Options& options) {
  auto spec = load_or_report(options.file);
  if (!spec) return kExitUsage;
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
  std::map<std::string, std::vector<ListenSocket>> listen;
  for (const auto& service : spec->services) {
    std::string error;
    listen[service.name] = bind_listen_sockets(service.listen, &error);
    if (!error.empty()) {
      std::fprintf(stderr, "deployctl: %s: %s\n", service.name.c_str(), error.c_str());
      for (auto& [name, sockets] : listen) close_listen_sockets(sockets);
      return kExitFailed;
    }
  }
  setup_logging();
  if (!run_pre_start(spec->pre_start,
                     {paths.logs, {spec->logs.max_size, spec->logs.keep}, false})) {
    for (auto& [name, sockets] : listen) close_listen_sockets(sockets);
    return kExitFailed;
  }
  int notify_fd = -1;
  if (options.detach) {
    if (auto parent_exit = detach(paths, &notify_fd)) return *parent_exit;
    spdlog::drop_all();  // log again to the new stderr (the log file), without terminal colors
    setup_logging();
  }
  std::ofstream(paths.pid) << getpid() << "\n";
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
  std::string error;
  if (!supervisor.start(&error)) {
    spdlog::error("{}", error);
    on_started(false, error);
    return kExitFailed;
  }
  io.run();
  unlink(paths.pid.c_str());
  if (supervisor.stopped_by_request()) unlink(paths.scale.c_str());
  return supervisor.exit_code();
}

int run_validate(const Options& options) {
  auto spec = load_or_report(options.file);
  if (!spec) return kExitUsage;
  int replicas = 0;
  for (const auto& service : spec->services) replicas += service.replicas;
  std::printf("%s: ok (%zu services, %d replicas)\n", options.file.c_str(), spec->services.size(),
              replicas);
  return kExitOk;
}

std::string human_duration(std::int64_t ms) {
  std::int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  if (s < 86400) return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m";
  return std::to_string(s / 86400) + "d" + std::to_string(s % 86400 / 3600) + "h";
}

std::string human_bytes(const json::Value& value) {
  if (!value.is_number()) return "-";
  double bytes = value.as_double();
  const char* units[] = {"B", "K", "M", "G", "T"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f%s" : "%.1f%s", bytes, units[unit]);
  return text;
}

std::string describe_last_exit(const json::Value& exit) {
  if (!exit.is_object()) return "-";
  auto number = [&exit](const char* key) -> std::optional<int> {
    const auto* value = exit.find(key);
    if (!value || !value->is_number()) return std::nullopt;
    return static_cast<int>(value->as_int());
  };
  const auto code = number("code"), signal = number("signal");
  std::string text = code || signal ? describe_exit(code, signal) : "";
  std::string reason = exit.find("reason") ? exit.find("reason")->as_string() : "";
  if (reason != "exit" && reason != "signal") text += (text.empty() ? "" : " ") + std::string("[") + reason + "]";
  return text;
}

// "now/max" for a replica under memory limits ("now/soft" without max), else its RSS.
std::string describe_memory(const json::Value& memory, const json::Value& rss) {
  const auto* bytes = memory.is_object() ? memory.find("bytes") : nullptr;
  if (!bytes || !bytes->is_number()) return human_bytes(rss);
  const auto* max = memory.find("max");
  const auto* soft = memory.find("restart_above");
  const auto* limit = max && max->is_number() ? max : soft;
  std::string text = human_bytes(*bytes);
  if (limit && limit->is_number()) text += "/" + human_bytes(*limit);
  return text;
}

long long memory_restarts(const json::Value& memory) {
  const auto* restarts = memory.is_object() ? memory.find("restarts") : nullptr;
  return restarts && restarts->is_number() ? restarts->as_int() : 0;
}

void print_status_table(const json::Value& status) {
  const auto* mode = status.find("memory_mode");
  std::printf("%s: %s (supervisor pid %lld, memory limits: %s)\n",
              status.find("name")->as_string().c_str(), status.find("state")->as_string().c_str(),
              static_cast<long long>(status.find("pid")->as_int()),
              mode && mode->is_string() ? mode->as_string().c_str() : "?");
  std::printf("%-12s %-8s %-11s %-10s %-8s %-9s %-28s %-16s %s\n", "REPLICA", "PID", "STATE",
              "HEALTH", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "MEM-RESTARTS");
  for (const auto& service : status.find("services")->as_array()) {
    for (const auto& replica : service.find("replicas")->as_array()) {
      auto field = [&](const char* key) -> const json::Value& {
        static const json::Value null;
        const auto* value = replica.find(key);
        return value ? *value : null;
      };
      std::string pid = field("pid").is_number() ? std::to_string(field("pid").as_int()) : "-";
      std::string uptime =
          field("uptime_ms").is_number() ? human_duration(field("uptime_ms").as_int()) : "-";
      std::printf("%-12s %-8s %-11s %-10s %-8s %-9lld %-28s %-16s %lld\n",
                  field("id").as_string().c_str(), pid.c_str(), field("state").as_string().c_str(),
                  field("health").as_string().c_str(), uptime.c_str(),
                  static_cast<long long>(field("restarts").as_int()),
                  describe_last_exit(field("last_exit")).c_str(),
                  describe_memory(field("memory"), field("rss_bytes")).c_str(),
                  static_cast<long long>(memory_restarts(field("memory"))));
    }
    std::printf("%-12s %lld/%lld ready\n", (service.find("name")->as_string() + ":").c_str(),
                static_cast<long long>(service.find("ready")->as_int()),
                static_cast<long long>(service.find("desired")->as_int()));
  }
}

// A zombie has exited too: its reaping is up to whoever adopted the detached supervisor.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] == 'Z';
}

bool wait_for_exit(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (process_gone(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

int run_client(const Options& options) {
  std::string name = options.name;
  std::string spec_path;
  if (name.empty() && options.command != "reload") {
    auto named = deployment_name(options.file);
    if (!named) {
      load_or_report(options.file);  // says why
      return kExitUsage;
    }
    name = *named;
  }
  if (options.command == "reload") {
    auto spec = load_or_report(options.file);
    if (!spec) return kExitUsage;
    if (!options.name.empty() && options.name != spec->name) {
      return usage_error("--name " + options.name + " does not match the spec's name " + spec->name);
    }
    name = spec->name;
    spec_path = spec->path;
  }
  const StatePaths paths = state_paths(runtime_base(options.runtime_dir), name);
  json::Value request;
  request["command"] = options.command;
  if (options.command == "scale") {
    json::Value counts;
    for (const auto& [service, count] : options.counts) counts[service] = count;
    request["counts"] = std::move(counts);
  }
  if (options.command == "reload") request["file"] = spec_path;
  if (options.command == "restart") {
    json::Array services;
    for (const auto& service : options.services) services.push_back(service);
    request["services"] = std::move(services);
  }
  ClientResult result = call_supervisor(paths.socket, request);
  if (result.exit_code != kExitOk) {
    if (result.exit_code == kExitNotRunning) {
      std::fprintf(stderr, "deployctl: %s is not running (no supervisor at %s)\n", name.c_str(),
                   paths.socket.c_str());
    } else {
      std::fprintf(stderr, "deployctl: %s\n", result.error.c_str());
    }
    return result.exit_code;
  }
  if (options.command == "status") {
    const json::Value* status = result.response.find("status");
    if (!status || !status->find("services")) {
      std::fprintf(stderr, "deployctl: malformed status from the supervisor\n");
      return kExitFailed;
    }
    if (options.json) {
      std::printf("%s\n", json::dump(*status).c_str());
    } else {
      print_status_table(*status);
    }
  } else if (options.command == "scale") {
    for (const auto& [service, count] : options.counts) {
      std::printf("%s: %s scaled to %d\n", name.c_str(), service.c_str(), count);
    }
  } else if (options.command == "restart") {
    std::printf("%s: restarted %s\n", name.c_str(),
                options.services.empty() ? "every service" : "the named services");
  } else if (options.command == "reload") {
    std::printf("%s: reloaded from %s\n", name.c_str(), spec_path.c_str());
  } else if (options.command == "down") {
    const auto* pid = result.response.find("pid");
    if (pid && !wait_for_exit(static_cast<pid_t>(pid->as_int()), std::chrono::seconds(10))) {
      std::fprintf(stderr, "deployctl: %s stopped its replicas but its supervisor is still running\n",
                   name.c_str());
      return kExitFailed;
    }
    std::printf("%s stopped\n", name.c_str());
  }
  return kExitOk;
}

}  // namespace

int run_cli(int argc, char** argv) {
  // export has options of its own (--image, -o, ...): it parses its arguments itself.
  if (argc > 1 && std::string_view(argv[1]) == "export") return run_export(argc - 1, argv + 1);
  Options options;
  if (auto exit = parse_args(argc, argv, &options)) return *exit;
  if (options.command == "up") return run_up(options);
  if (options.command == "validate") return run_validate(options);
  if (options.command == "logs") {
    options.logs.file = options.file;
    options.logs.name = options.name;
    options.logs.log_dir_flag = options.log_dir;
    options.logs.runtime_dir_flag = options.runtime_dir;
    return run_logs(options.logs);
  }
  return run_client(options);
}

}  // namespace deployctl
