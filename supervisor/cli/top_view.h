// The `deployctl top` screen as a pure function (docs/cli.md): from the supervisor's status
// JSON, its recent events, CPU samples, the terminal size, the selection and the sort to the
// lines to draw. No I/O; the terminal adapter (top_command.cc) only fetches and draws.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "events.h"
#include "json.h"

namespace deployctl {

// The table's order, cycled by `s`: file order (service, then index), then the largest CPU,
// memory, restarts first.
enum class TopSort { name, cpu, memory, restarts };
const char* sort_name(TopSort sort);
TopSort next_sort(TopSort sort);

struct TopScreen {
  int width = 80;           // columns; <= 0: lines are not cut (plain text)
  int height = 24;          // rows; <= 0: every replica and the last kTopEvents events (plain text)
  bool interactive = true;  // false: no selection marker, no key help
  TopSort sort = TopSort::name;
  std::string selected;  // replica id; empty or gone: the first row
  bool log = false;      // the selected replica's log tail instead of the table
};

struct TopData {
  json::Value status;                         // the status object (docs/cli.md)
  std::vector<DeploymentEvent> events;        // oldest first
  std::map<std::string, double> cpu_percent;  // by replica id; absent: not measured yet
  std::vector<std::string> log_lines;         // the selected replica's log lines (screen.log)
  std::string problem;                        // shown in the title, e.g. "not answering"
};

struct TopLine {
  std::string text;  // printable ASCII only, at most screen.width characters
  bool highlight = false;
};

inline constexpr std::size_t kTopEvents = 5;

// Replica ids in the order the table shows them.
std::vector<std::string> replica_order(const json::Value& status, TopSort sort,
                                       const std::map<std::string, double>& cpu_percent);
// The id `delta` rows away from `selected` in `order`, clamped to its ends; from the first row
// if `selected` is not in it; "" if `order` is empty.
std::string move_selection(const std::vector<std::string>& order, const std::string& selected,
                           int delta);
// CPU use in percent of one core between two samples of a process's CPU seconds.
double cpu_percent(double cpu_before, double cpu_after, double wall_seconds);

// At most screen.height lines (if > 0), each at most screen.width characters (if > 0).
std::vector<TopLine> render_top(const TopData& data, const TopScreen& screen);

}  // namespace deployctl
