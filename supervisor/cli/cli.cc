#include "cli.h"

#include <sys/types.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <thread>

#include "commands.h"
#include "events_command.h"
#include "export_command.h"
#include "fd_keeper.h"
#include "load.h"
#include "log_command.h"
#include "management.h"
#include "paths.h"
#include "read_file.h"
#include "startup.h"
#include "status_table.h"
#include "top_command.h"
#include "timeouts.h"
#include "leftovers.h"
#include "tls_check.h"
#include "upgrade.h"
#include "version.h"

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
  bool follow = false;  // events -f
  std::vector<std::pair<std::string, int>> counts;
  std::vector<std::string> services;  // restart
  std::string log_dir;
  std::string binary;  // upgrade --binary
  LogsRequest logs;  // logs
  std::optional<std::chrono::milliseconds> timeout;  // --timeout; 0: wait forever
};

void print_help() {
  std::printf("deployctl %s: run and supervise the replicas of a deployment\n\nusage:\n",
              deployctl_version());
  for (const auto& command : commands()) {
    std::printf("  deployctl %-58s %s\n", std::string(command.usage).c_str(),
                std::string(command.summary).c_str());
  }
  std::printf(
      "\noptions for every command:\n"
      "  --runtime-dir DIR   state directories live in DIR/NAME (also DEPLOYCTL_RUNTIME_DIR)\n"
      "  --log-dir DIR       log files live in DIR/NAME (also DEPLOYCTL_LOG_DIR; docs/logs.md)\n"
      "  --timeout DURATION  status, scale, restart, reload, down: give up waiting for the\n"
      "                      supervisor after DURATION (e.g. 5s, 2m; 0: never). Defaults: status\n"
      "                      10s, the others from the spec's start_period and stop timeouts\n"
      "  -h, --help          this help;   --version   the version\n\n"
      "exit codes: 0 ok, 1 failed, 2 usage or invalid spec, 3 not running, 4 already running,\n"
      "5 permission denied, 6 busy (another command is under way; try again), 7 timed out\n"
      "(no answer within --timeout). See docs/cli.md.\n");
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
      std::printf("deployctl %s\n", deployctl_version());
      return kExitOk;
    } else if (options->command == "logs" && (arg == "-f" || arg == "--follow")) {
      options->logs.follow = true;
    } else if (options->command == "events" && (arg == "-f" || arg == "--follow")) {
      options->follow = true;
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
    } else if (flag_is("--timeout")) {
      auto value = value_of(i, "--timeout");
      std::string error;
      std::optional<Duration> limit;
      if (value && *value == "0") {
        limit = Duration(0);
      } else if (value) {
        limit = parse_duration(*value, &error);
      }
      if (!limit) {
        return usage_error("--timeout needs a duration such as 5s, 2m or 0 (no limit)" +
                           (error.empty() ? std::string() : ": " + error));
      }
      options->timeout = *limit;
    } else if (options->command == "upgrade" && flag_is("--binary")) {
      auto value = value_of(i, "--binary");
      if (!value || value->empty()) return usage_error("--binary needs a path");
      std::error_code ec;
      auto absolute = std::filesystem::absolute(*value, ec);
      options->binary = ec ? *value : absolute.string();
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
    } else if (options->command == "restart" || options->command == "renew") {
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

// The certificate and key files of every [tls] service: facts on stdout, problems on stderr
// ("FILE: KEY: CERT-OR-KEY-FILE: MESSAGE"). False if any problem is an error.
bool report_tls_files(const Spec& spec, const std::string& file) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  bool ok = true;
  for (const TlsFileReport& report : check_tls_files(spec, now)) {
    for (const TlsProblem& problem : report.problems) {
      std::fprintf(stderr, "%s: %s%s\n", file.c_str(),
                   problem.error ? "" : "warning: ", problem.to_string().c_str());
      ok = ok && !problem.error;
    }
    if (!report.facts) continue;
    const std::int64_t left = report.facts->not_after - now;
    const std::string when = left > 0 ? std::to_string(left / 86400) + " days left" : "expired";
    std::printf("%s: tls %s: subject %s, issuer %s, expires %s (%s)\n", file.c_str(),
                report.service.c_str(), report.facts->subject.c_str(), report.facts->issuer.c_str(),
                format_utc(report.facts->not_after).c_str(), when.c_str());
  }
  return ok;
}

int run_validate(const Options& options) {
  auto spec = load_or_report(options.file);
  if (!spec) return kExitUsage;
  if (!report_tls_files(*spec, options.file)) return kExitUsage;
  int replicas = 0;
  for (const auto& service : spec->services) replicas += service.replicas;
  std::printf("%s: ok (%zu services, %d replicas)\n", options.file.c_str(), spec->services.size(),
              replicas);
  return kExitOk;
}

// A zombie has exited too: its reaping is up to whoever adopted the detached supervisor.
bool process_gone(pid_t pid) {
  std::istringstream stat(
      read_file("/proc/" + std::to_string(pid) + "/stat", kMaxKernelBytes).text);
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

// `down` with no supervisor: what a dead one left running is stopped (leftovers.h). nullopt
// if nothing was left (then "not running" as usual).
std::optional<int> stop_leftovers_of_dead_supervisor(const std::string& name,
                                                     const StatePaths& paths, const Spec* spec) {
  Duration grace{10000};
  if (spec) {
    grace = Duration{0};
    for (const auto& service : spec->services) grace = std::max(grace, service.stop.timeout);
  }
  std::vector<RecordedReplica> survivors;
  auto stopped = stop_leftovers_if_unlocked(paths.lock, paths.dir, grace, &survivors);
  if (!stopped || stopped->empty()) return std::nullopt;
  if (!survivors.empty()) {
    std::fprintf(stderr, "deployctl: %s is not running, and %s left by its dead supervisor did not stop\n",
                 name.c_str(), describe_leftovers(survivors).c_str());
    return kExitFailed;
  }
  std::printf("%s was not running; stopped %s left by a supervisor that died\n", name.c_str(),
              describe_leftovers(*stopped).c_str());
  return kExitOk;
}

// After the supervisor accepted an upgrade: its status, now served by the new binary, tells
// the outcome (the upgrade counter moved on, or the failure counter with the reason).
int wait_for_upgrade(const std::string& name, const StatePaths& paths, const json::Value& accepted,
                     std::chrono::milliseconds timeout) {
  const auto upgrades = json::as_int(json::get(accepted, "upgrades"));
  const auto failures = json::as_int(json::get(accepted, "upgrade_failures"));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  json::Value request;
  request["command"] = "status";
  while (std::chrono::steady_clock::now() < deadline) {
    ClientResult result = call_supervisor(paths.socket, request, kStatusTimeout);
    const json::Value& supervisor = json::get(json::get(result.response, "status"), "supervisor");
    if (result.exit_code == kExitOk && json::as_int(json::get(supervisor, "upgrades")) > upgrades) {
      std::printf("%s: upgraded in place to deployctl %s (pid %lld, %s)\n", name.c_str(),
                  json::as_string(json::get(supervisor, "version")).c_str(),
                  static_cast<long long>(json::as_int(json::get(json::get(result.response, "status"), "pid"))),
                  json::as_string(json::get(supervisor, "executable")).c_str());
      return kExitOk;
    }
    if (result.exit_code == kExitOk &&
        json::as_int(json::get(supervisor, "upgrade_failures")) > failures) {
      std::fprintf(stderr, "deployctl: upgrade of %s failed: %s; the previous binary keeps running\n",
                   name.c_str(), json::as_string(json::get(supervisor, "upgrade_error")).c_str());
      return kExitFailed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "deployctl: %s accepted the upgrade but did not report its outcome within %lldms\n",
               name.c_str(), static_cast<long long>(timeout.count()));
  return kExitTimeout;
}

// `logs` (or top's log view) of the deployment the options name.
LogsRequest logs_request(const Options& options) {
  LogsRequest logs = options.logs;
  logs.file = options.file;
  logs.name = options.name;
  logs.log_dir_flag = options.log_dir;
  logs.runtime_dir_flag = options.runtime_dir;
  return logs;
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
  if (options.command == "top") return run_top({name, paths.socket, logs_request(options)});
  json::Value request;
  request["command"] = options.command;
  if (options.command == "scale") {
    json::Value counts;
    for (const auto& [service, count] : options.counts) counts[service] = count;
    request["counts"] = std::move(counts);
  }
  if (options.command == "reload") request["file"] = spec_path;
  if (options.command == "upgrade") request["binary"] = options.binary;
  if (options.command == "events") request["follow"] = options.follow;
  if (options.command == "restart" || options.command == "renew") {
    json::Array services;
    for (const auto& service : options.services) services.push_back(service);
    request["services"] = std::move(services);
  }
  std::optional<Spec> spec;  // its timeouts bound the wait, if it is this deployment's
  if (options.command != "status" && options.command != "metrics" &&
      options.command != "events") {
    spec = load_spec_file(options.file).spec;
  }
  if (spec && spec->name != name) spec.reset();
  const auto timeout = options.timeout.value_or(
      default_request_timeout(options.command, spec ? &*spec : nullptr));
  ClientResult result = call_supervisor(
      paths.socket, request, timeout,
      options.follow ? event_printer(options.json) : std::function<bool(const json::Value&)>());
  // A supervisor that was exiting as `down` arrived (after a failed start, or a stop already
  // under way) closes without answering: once it is gone, `down` is what happened.
  if (result.unanswered && options.command == "down" &&
      wait_for_unlock(paths.lock, timeout.count() ? timeout : std::chrono::hours(24))) {
    result.exit_code = kExitNotRunning;
  }
  if (result.exit_code == kExitNotRunning && options.command == "down") {
    if (auto code = stop_leftovers_of_dead_supervisor(name, paths, spec ? &*spec : nullptr)) {
      return *code;
    }
  }
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
    const json::Value* status = json::find(result.response, "status");
    if (!status || !json::find(*status, "services")) {
      std::fprintf(stderr, "deployctl: malformed status from the supervisor\n");
      return kExitFailed;
    }
    if (options.json) {
      std::printf("%s\n", json::dump(*status).c_str());
    } else {
      print_status_table(*status);
    }
  } else if (options.command == "events") {
    if (!options.follow) return print_event_list(result.response, options.json);
  } else if (options.command == "metrics") {
    const json::Value* text = json::find(result.response, "metrics");
    if (!text || !text->is_string()) {
      std::fprintf(stderr, "deployctl: malformed metrics from the supervisor\n");
      return kExitFailed;
    }
    std::fputs(json::as_string(*text).c_str(), stdout);
  } else if (options.command == "scale") {
    for (const auto& [service, count] : options.counts) {
      std::printf("%s: %s scaled to %d\n", name.c_str(), service.c_str(), count);
    }
  } else if (options.command == "restart") {
    std::printf("%s: restarted %s\n", name.c_str(),
                options.services.empty() ? "every service" : "the named services");
  } else if (options.command == "renew") {
    std::printf("%s: requesting new certificates; `deployctl status` shows the result\n",
                name.c_str());
  } else if (options.command == "reload") {
    std::printf("%s: reloaded from %s\n", name.c_str(), spec_path.c_str());
  } else if (options.command == "upgrade") {
    return wait_for_upgrade(name, paths, result.response, timeout);
  } else if (options.command == "down") {
    const auto* pid = json::find(result.response, "pid");
    if (pid && !wait_for_exit(static_cast<pid_t>(json::as_int(*pid)), std::chrono::seconds(10))) {
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
  // The halves of an upgrade in place (docs/upgrade.md), run by the supervisor itself.
  if (argc > 1 && std::string_view(argv[1]) == "upgrade-check") {
    return run_upgrade_check(argc - 1, argv + 1);
  }
  if (argc > 1 && std::string_view(argv[1]) == "__keeper") return run_keeper(argc - 1, argv + 1);
  if (argc > 1 && std::string_view(argv[1]) == "resume") {
    ResumeArguments resume;
    for (int i = 2; i + 1 < argc; i += 2) {
      const std::string_view flag = argv[i];
      if (flag == "--state-fd") resume.state_fd = std::atoi(argv[i + 1]);
      if (flag == "--previous-exe-fd") resume.previous_exe_fd = std::atoi(argv[i + 1]);
      if (flag == "--rolled-back") resume.rolled_back = argv[i + 1];
    }
    return run_resumed(resume);
  }
  Options options;
  if (auto exit = parse_args(argc, argv, &options)) return *exit;
  if (options.command == "up") {
    auto spec = load_or_report(options.file);
    if (!spec) return kExitUsage;
    return run_up(*spec, {options.runtime_dir, options.log_dir, options.detach, options.dbus});
  }
  if (options.command == "validate") return run_validate(options);
  if (options.command == "logs") return run_logs(logs_request(options));
  return run_client(options);
}

}  // namespace deployctl
