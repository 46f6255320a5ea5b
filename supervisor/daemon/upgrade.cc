#include "upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "commands.h"
#include "deployment_state_json.h"
#include "load.h"

namespace deployctl {

std::string current_executable() {
  char buffer[4096];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return "";
  std::string path(buffer, static_cast<std::size_t>(n));
  const std::string deleted = " (deleted)";  // replaced on disk since: the path is the new one
  if (path.size() > deleted.size() && path.ends_with(deleted))
    path.resize(path.size() - deleted.size());
  return path;
}

CheckResult run_check(const std::vector<std::string>& argv, std::chrono::milliseconds limit,
                      int keep_fd) {
  CheckResult result;
  int out[2];
  if (argv.empty() || pipe2(out, O_CLOEXEC) != 0) {
    result.output = std::string("cannot run the check: ") + std::strerror(errno);
    return result;
  }
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);
    execv(args[0], args.data());
    const char* reason = std::strerror(errno);  // in the forked child: write(2) only
    for (const char* part : {"cannot execute: ", reason}) {
      ssize_t ignored = write(1, part, std::strlen(part));
      (void)ignored;
    }
    _exit(127);
  }
  close(out[1]);
  if (pid < 0) {
    close(out[0]);
    result.output = std::string("cannot fork: ") + std::strerror(errno);
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd watch{out[0], POLLIN, 0};
    int ready = poll(&watch, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[1024];
    ssize_t n = read(out[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the check (and whatever inherited its output) is done
    if (result.output.size() < 4096) result.output.append(buffer, static_cast<std::size_t>(n));
  }
  close(out[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!result.output.empty() && std::isspace(static_cast<unsigned char>(result.output.back()))) {
    result.output.pop_back();
  }
  if (timed_out) {
    result.output = "no answer within " + std::to_string(limit.count()) + "ms";
  } else if (WIFSIGNALED(status)) {
    result.output += (result.output.empty() ? "" : "; ") + std::string("killed by signal ") +
                     std::to_string(WTERMSIG(status));
  } else if (WEXITSTATUS(status) != 0) {
    result.output += (result.output.empty() ? "" : "; ") + std::string("exit status ") +
                     std::to_string(WEXITSTATUS(status));
  } else {
    result.ok = true;
  }
  return result;
}

int write_state_fd(const std::string& text, std::string* error) {
  int fd = memfd_create("deployctl-state", 0);
  if (fd < 0) {
    *error = std::string("memfd_create: ") + std::strerror(errno);
    return -1;
  }
  std::size_t written = 0;
  while (written < text.size()) {
    ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = std::string("cannot write the state: ") + std::strerror(errno);
      close(fd);
      return -1;
    }
    written += static_cast<std::size_t>(n);
  }
  return fd;
}

std::optional<std::string> read_state_fd(int fd) {
  constexpr std::size_t kMax = 64u << 20;
  std::string text;
  char buffer[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(fd, buffer, sizeof buffer, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
    offset += n;
    if (text.size() > kMax) return std::nullopt;
  }
}

std::optional<CarriedState> decode_state(const std::string& text, std::string* error) {
  auto doc = json::parse(text);
  if (!doc || !doc->is_object()) {
    *error = "the state is not a JSON object";
    return std::nullopt;
  }
  const auto format = json::as_int(json::get(*doc, "format"));
  if (format != kUpgradeStateFormat) {
    *error = "state format " + std::to_string(format) + " is not one this binary reads (" +
             std::to_string(kUpgradeStateFormat) + ")";
    return std::nullopt;
  }
  LoadResult loaded = parse_spec(json::as_string(json::get(*doc, "spec_text")),
                                 json::as_string(json::get(*doc, "spec_path")));
  if (!loaded.spec) {
    *error = "the carried spec does not load: " +
             (loaded.errors.empty() ? std::string("?") : loaded.errors.front().to_string());
    return std::nullopt;
  }
  auto core = deployment_state_from_json(json::get(*doc, "core"));
  if (!core) {
    *error = "the deployment core's state does not decode";
    return std::nullopt;
  }
  return CarriedState{std::move(*doc), std::move(*loaded.spec), std::move(*core)};
}

std::vector<int> carried_fds(const json::Value& doc) {
  std::vector<int> fds;
  auto add = [&fds](const json::Value& value) {
    if (value.is_number_integer()) fds.push_back(static_cast<int>(json::as_int(value, -1)));
  };
  for (const char* key : {"lock_fd", "management_fd", "keeper_fd"}) add(json::get(doc, key));
  for (const auto& [name, sockets] : json::as_object(json::get(doc, "services"))) {
    for (const auto& fd : json::as_array(sockets)) add(fd);
  }
  for (const auto& [name, addresses] : json::as_object(json::get(doc, "replica_sockets"))) {
    for (const auto& [address, sockets] : json::as_object(addresses)) {
      for (const auto& socket : json::as_array(sockets)) add(json::get(socket, "fd"));
    }
  }
  for (const auto& replica : json::as_array(json::get(doc, "replicas"))) {
    for (const char* key : {"control_fd", "notify_fd", "out_fd", "err_fd", "pidfd"})
      add(json::get(replica, key));
  }
  for (const auto& [service, acme] : json::as_object(json::get(doc, "acme"))) {
    add(json::get(acme, "http_fd"));
  }
  return fds;
}

void set_cloexec(const std::vector<int>& fds, bool on) {
  for (int fd : fds) {
    if (fd >= 0) fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
  }
}

namespace {

std::optional<int> number_flag(int argc, char** argv, std::string_view flag) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] != flag) continue;
    std::string_view text = argv[i + 1];
    int value = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size()) return value;
  }
  return std::nullopt;
}

}  // namespace

int run_upgrade_check(int argc, char** argv) {
  if (auto version = number_flag(argc, argv, "--state-version");
      version && *version != kUpgradeStateFormat) {
    std::fprintf(stderr, "deployctl: state format %d is not one this binary reads (%d)\n", *version,
                 kUpgradeStateFormat);
    return kExitFailed;
  }
  auto fd = number_flag(argc, argv, "--state-fd");
  if (!fd) {
    if (number_flag(argc, argv, "--state-version")) return kExitOk;
    std::fprintf(stderr, "usage: deployctl upgrade-check --state-fd N | --state-version N\n");
    return kExitUsage;
  }
  auto text = read_state_fd(*fd);
  std::string error = "cannot read the state from fd " + std::to_string(*fd);
  if (!text || !decode_state(*text, &error)) {
    std::fprintf(stderr, "deployctl: %s\n", error.c_str());
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace deployctl
