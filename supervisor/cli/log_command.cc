#include "log_command.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>

#include "commands.h"
#include "load.h"
#include "log_reader.h"
#include "paths.h"

namespace deployctl {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr std::size_t kTimeWidth = 24;  // "2025-01-02T03:04:05.678Z"

// Lines of several logs in time order (each log's own order kept for equal times).
void sort_by_time(std::vector<std::string>* lines) {
  std::stable_sort(lines->begin(), lines->end(), [](const std::string& a, const std::string& b) {
    return a.compare(0, kTimeWidth, b, 0, kTimeWidth) < 0;
  });
}

void print(const std::vector<std::string>& lines) {
  for (const auto& line : lines) std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

struct Target {
  std::string dir;
  logs::Selector selector;
  std::string what;  // for messages: "web.2", "every log"
};

// The last `count` lines of the target's logs in time order; nullopt if it has no log file.
std::optional<std::vector<std::string>> tail_of(const Target& target, std::size_t count) {
  std::vector<std::string> bases =
      target.selector.base.empty() ? LogReader::bases_in(target.dir)
                                   : std::vector<std::string>{target.selector.base};
  std::vector<std::string> lines;
  bool found = false;
  for (const auto& base : bases) {
    LogReader reader(target.dir, base);
    if (!reader.open()) continue;
    found = true;
    auto tail = reader.tail(count, target.selector);
    lines.insert(lines.end(), tail.begin(), tail.end());
  }
  if (!found) return std::nullopt;
  sort_by_time(&lines);
  if (lines.size() > count) lines.erase(lines.begin(), lines.end() - static_cast<long>(count));
  return lines;
}

std::string no_log_message(const Target& target) {
  return "no log of " + target.what + " in " + target.dir + " (see docs/logs.md for where logs go)";
}

int show_tail(const Target& target, std::size_t count) {
  auto lines = tail_of(target, count);
  if (!lines) {
    std::fprintf(stderr, "deployctl: %s\n", no_log_message(target).c_str());
    return kExitFailed;
  }
  print(*lines);
  return kExitOk;
}

[[noreturn]] void follow(const Target& target, std::size_t count) {
  std::map<std::string, std::unique_ptr<LogReader>> readers;
  bool first = true;
  for (;;) {
    std::vector<std::string> bases =
        target.selector.base.empty() ? LogReader::bases_in(target.dir)
                                     : std::vector<std::string>{target.selector.base};
    std::vector<std::string> lines;
    for (const auto& base : bases) {
      auto& reader = readers[base];
      if (!reader) {
        auto fresh = std::make_unique<LogReader>(target.dir, base);
        if (!fresh->open()) continue;
        // Logs there at the start show their last lines; logs created later, all of theirs.
        auto tail = fresh->tail(first ? count : static_cast<std::size_t>(-1), target.selector);
        lines.insert(lines.end(), tail.begin(), tail.end());
        reader = std::move(fresh);
        continue;
      }
      std::string warning;
      auto more = reader->poll(target.selector, &warning);
      if (!warning.empty()) std::fprintf(stderr, "deployctl: %s\n", warning.c_str());
      lines.insert(lines.end(), more.begin(), more.end());
    }
    sort_by_time(&lines);
    if (first && lines.size() > count) {
      lines.erase(lines.begin(), lines.end() - static_cast<long>(count));
    }
    first = false;
    print(lines);
    std::this_thread::sleep_for(kPollInterval);
  }
}

// The target of `request`, or nullopt with *error: what to print, one line per problem (a
// selector that names nothing, an invalid spec).
std::optional<Target> target_of(const LogsRequest& request, std::string* error) {
  auto selector = logs::parse_selector(request.selector, error);
  if (!selector) {
    *error = "deployctl: " + *error + "\n";
    return std::nullopt;
  }
  std::string name = request.name;
  std::optional<Spec> spec;
  if (name.empty()) {
    LoadResult loaded = load_spec_file(request.file);
    if (!loaded.spec) {
      for (const auto& problem : loaded.errors) *error += problem.to_string() + "\n";
      return std::nullopt;
    }
    spec = std::move(loaded.spec);
    name = spec->name;
  }
  const std::string state_dir = state_paths(runtime_base(request.runtime_dir_flag), name).dir;
  return Target{log_dir_for(request.log_dir_flag, request.runtime_dir_flag,
                            spec ? &spec->logs : nullptr, name, state_dir),
                *selector, request.selector.empty() ? "any service of " + name : request.selector};
}

}  // namespace

std::vector<std::string> read_log_tail(const LogsRequest& request, std::string* error) {
  auto target = target_of(request, error);
  if (!target) return {};
  auto lines = tail_of(*target, request.lines);
  if (!lines) *error = no_log_message(*target);
  return lines.value_or(std::vector<std::string>{});
}

int run_logs(const LogsRequest& request) {
  std::string error;
  auto target = target_of(request, &error);
  if (!target) {
    std::fputs(error.c_str(), stderr);
    return kExitUsage;
  }
  if (request.follow) follow(*target, request.lines);
  return show_tail(*target, request.lines);
}

}  // namespace deployctl
