#include "top_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>

#include "commands.h"
#include "management.h"
#include "proc_stats.h"
#include "top_view.h"

// Last, and as functions: curses' macros (timeout, move, erase, ...) would rewrite the names of
// the headers above.
#define NCURSES_NOMACROS
#include <curses.h>

namespace deployctl {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRefresh = std::chrono::milliseconds(1000);
constexpr auto kRequestTimeout = std::chrono::milliseconds(2000);
constexpr int kEscape = 27;

// One status and one events request: the supervisor's part of a refresh.
struct Snapshot {
  int exit_code = kExitOk;
  std::string error;
  json::Value status;
  std::vector<DeploymentEvent> events;
};

Snapshot fetch(const std::string& socket) {
  Snapshot snapshot;
  json::Value request;
  request["command"] = "status";
  ClientResult status = call_supervisor(socket, request, kRequestTimeout);
  const json::Value* body =
      status.exit_code == kExitOk ? json::find(status.response, "status") : nullptr;
  if (!body || !json::find(*body, "services")) {
    snapshot.exit_code = status.exit_code == kExitOk ? kExitFailed : status.exit_code;
    snapshot.error = status.exit_code == kExitOk ? "malformed status" : status.error;
    return snapshot;
  }
  snapshot.status = *body;
  request["command"] = "events";
  ClientResult events = call_supervisor(socket, request, kRequestTimeout);
  if (const json::Value* list = json::find(events.response, "events"); list && list->is_array()) {
    const auto& all = json::as_array(*list);
    const std::size_t first = all.size() > kTopEvents ? all.size() - kTopEvents : 0;
    for (std::size_t i = first; i < all.size(); ++i) {
      if (auto event = event_from_json(all[i])) snapshot.events.push_back(std::move(*event));
    }
  }
  return snapshot;
}

// CPU percent per replica from two samples of its process's CPU seconds, a refresh apart (read
// here from /proc, so the supervisor does no work for it).
class CpuSampler {
 public:
  std::map<std::string, double> sample(const json::Value& status) {
    std::map<std::string, Sample> now;
    std::map<std::string, double> percent;
    const auto at = Clock::now();
    for (const auto& service : json::as_array(json::get(status, "services"))) {
      for (const auto& replica : json::as_array(json::get(service, "replicas"))) {
        const json::Value& pid = json::get(replica, "pid");
        if (!pid.is_number()) continue;
        const auto seconds = process_cpu_seconds(static_cast<pid_t>(json::as_int(pid)));
        if (!seconds) continue;
        const std::string key =
            json::as_string(json::get(replica, "id")) + ":" + std::to_string(json::as_int(pid));
        now[key] = {*seconds, at};
        if (auto it = last_.find(key); it != last_.end()) {
          percent[json::as_string(json::get(replica, "id"))] =
              cpu_percent(it->second.seconds, *seconds,
                          std::chrono::duration<double>(at - it->second.at).count());
        }
      }
    }
    last_ = std::move(now);
    return percent;
  }

 private:
  struct Sample {
    double seconds = 0;
    Clock::time_point at;
  };
  std::map<std::string, Sample> last_;  // by "id:pid": a new process starts over
};

// Says why the first fetch failed, as the other commands do; its exit code.
int report(const TopRequest& request, const Snapshot& failed) {
  if (failed.exit_code == kExitNotRunning) {
    std::fprintf(stderr, "deployctl: %s is not running (no supervisor at %s)\n",
                 request.name.c_str(), request.socket.c_str());
  } else {
    std::fprintf(stderr, "deployctl: %s\n", failed.error.c_str());
  }
  return failed.exit_code;
}

int print_snapshot(const TopRequest& request) {
  Snapshot snapshot = fetch(request.socket);
  if (snapshot.exit_code != kExitOk) return report(request, snapshot);
  TopData data{.status = std::move(snapshot.status), .events = std::move(snapshot.events)};
  for (const auto& line : render_top(data, {.width = 0, .height = 0, .interactive = false})) {
    std::printf("%s\n", line.text.c_str());
  }
  return kExitOk;
}

// The terminal, in curses mode for the object's life.
class Terminal {
 public:
  // nullptr if curses cannot drive this terminal (e.g. TERM unset or unknown).
  static std::unique_ptr<Terminal> open() {
    SCREEN* screen = newterm(nullptr, stdout, stdin);
    if (!screen) return nullptr;
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    return std::unique_ptr<Terminal>(new Terminal(screen));
  }
  ~Terminal() {
    endwin();
    delscreen(screen_);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  void draw(const std::vector<TopLine>& lines) {
    erase();
    for (std::size_t row = 0; row < lines.size(); ++row) {
      if (lines[row].highlight) attron(A_REVERSE);
      mvaddnstr(static_cast<int>(row), 0, lines[row].text.c_str(), COLS);
      if (lines[row].highlight) attroff(A_REVERSE);
    }
    refresh();
  }
  // A key, or ERR after `wait` without one. KEY_RESIZE after SIGWINCH (curses updates COLS and
  // LINES).
  int key(std::chrono::milliseconds wait) {
    timeout(static_cast<int>(std::max<long long>(wait.count(), 0)));
    return getch();
  }

 private:
  explicit Terminal(SCREEN* screen) : screen_(screen) {}
  SCREEN* screen_;
};

std::vector<std::string> log_tail(const TopRequest& request, const std::string& replica,
                                  int height) {
  LogsRequest logs = request.logs;
  logs.selector = replica;
  logs.lines = static_cast<std::size_t>(std::max(height, 1));
  std::string error;
  auto lines = read_log_tail(logs, &error);
  if (lines.empty() && !error.empty()) lines.push_back(error);
  return lines;
}

int run_interactive(const TopRequest& request) {
  Snapshot first = fetch(request.socket);
  if (first.exit_code != kExitOk) return report(request, first);
  auto terminal = Terminal::open();
  if (!terminal) return print_snapshot(request);
  CpuSampler cpu;
  TopData data{.status = first.status, .events = first.events};
  data.cpu_percent = cpu.sample(data.status);
  TopScreen screen;
  auto next_refresh = Clock::now() + kRefresh;
  for (;;) {
    screen.width = COLS;
    screen.height = LINES;
    const auto order = replica_order(data.status, screen.sort, data.cpu_percent);
    screen.selected = move_selection(order, screen.selected, 0);
    if (screen.log) data.log_lines = log_tail(request, screen.selected, LINES - 1);
    terminal->draw(render_top(data, screen));
    const int key = terminal->key(
        std::chrono::duration_cast<std::chrono::milliseconds>(next_refresh - Clock::now()));
    if (key == 'q' || key == 'Q') return kExitOk;
    if (key == 's' && !screen.log) screen.sort = next_sort(screen.sort);
    if (key == KEY_UP && !screen.log) screen.selected = move_selection(order, screen.selected, -1);
    if (key == KEY_DOWN && !screen.log) screen.selected = move_selection(order, screen.selected, 1);
    if (key == 'l') screen.log = !screen.log;
    if (key == kEscape) screen.log = false;
    if (key == ERR || Clock::now() >= next_refresh) {
      Snapshot snapshot = fetch(request.socket);
      if (snapshot.exit_code == kExitOk) {
        data.status = std::move(snapshot.status);
        data.events = std::move(snapshot.events);
        data.cpu_percent = cpu.sample(data.status);
        data.problem.clear();
      } else {
        data.problem = snapshot.error;  // the last view stays, marked stale
      }
      next_refresh = Clock::now() + kRefresh;
    }
  }
}

}  // namespace

int run_top(const TopRequest& request) {
  if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO)) return print_snapshot(request);
  return run_interactive(request);
}

}  // namespace deployctl
