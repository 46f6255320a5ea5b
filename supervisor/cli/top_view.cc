#include "top_view.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>

#include "log_format.h"
#include "replica_machine.h"
#include "status_table.h"

namespace deployctl {
namespace {

// Column widths of the replica table; the memory column takes what is left.
constexpr int kIdWidth = 9, kStateWidth = 10, kHealthWidth = 9, kUptimeWidth = 6,
              kRestartsWidth = 3, kExitWidth = 11, kCpuWidth = 5, kRequestsWidth = 6;
constexpr int kMinMemoryWidth = 9, kMaxMemoryWidth = 24;
constexpr int kFixedWidth = 2 + kIdWidth + 1 + kStateWidth + 1 + kHealthWidth + 1 + kUptimeWidth +
                            1 + kRestartsWidth + 1 + kExitWidth + 1 + kCpuWidth + 1 + 1 +
                            kRequestsWidth;

// Printable ASCII only: anything else (control bytes, escape sequences, UTF-8) becomes '?', so
// a worker's output cannot move the cursor or misalign the columns.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\t') c = ' ';
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  return out;
}

std::string fit(std::string text, int width) {
  if (width > 0 && static_cast<int>(text.size()) > width)
    text.resize(static_cast<std::size_t>(width));
  return text;
}

std::string pad(const std::string& text, int width, bool right = false) {
  std::string cut = fit(text, width);
  std::string fill(static_cast<std::size_t>(width) - cut.size(), ' ');
  return right ? fill + cut : cut + fill;
}

const json::Value& field(const json::Value& object, const char* key) {
  return json::get(object, key);
}

std::optional<double> number(const json::Value& value) {
  if (!value.is_number()) return std::nullopt;
  return json::as_double(value);
}

// "512B", "9.5K", "45M", "1.2G": at most four characters below 1000T.
std::string compact_bytes(double bytes) {
  const char* units = "BKMGT";
  int unit = 0;
  while (bytes >= 1000 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit > 0 && bytes < 10 ? "%.1f%c" : "%.0f%c", bytes,
                units[unit]);
  return text;
}

std::optional<double> memory_bytes(const json::Value& replica) {
  if (auto bytes = number(field(field(replica, "memory"), "bytes"))) return bytes;
  return number(field(replica, "rss_bytes"));
}

std::optional<double> memory_limit(const json::Value& replica) {
  const json::Value& memory = field(replica, "memory");
  if (auto max = number(field(memory, "max"))) return max;
  return number(field(memory, "restart_above"));
}

// "45M [####    ]": the bytes, then a bar that fills with their share of the limit (memory.max,
// else restart_above); without a limit only the bytes.
std::string memory_cell(const json::Value& replica, int width) {
  const auto bytes = memory_bytes(replica);
  const auto limit = memory_limit(replica);
  if (!bytes) return pad("-", width);
  const std::string text = pad(compact_bytes(*bytes), 4);
  const int inner = width - static_cast<int>(text.size()) - 3;
  if (!limit || *limit <= 0 || inner < 1) return pad(text, width);
  const double share = std::clamp(*bytes / *limit, 0.0, 1.0);
  const int filled = static_cast<int>(share * inner + 0.5);
  return text + " [" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(inner - filled), ' ') + "]";
}

// "exit 3", "SIGKILL", "SIGKILL oom", "exit 1 health"; "-" if it never exited.
std::string last_exit_cell(const json::Value& replica) {
  const json::Value& exit = field(replica, "last_exit");
  if (!exit.is_object()) return "-";
  std::string text;
  if (auto code = number(field(exit, "code"))) {
    text = "exit " + std::to_string(static_cast<int>(*code));
  } else if (auto signal = number(field(exit, "signal"))) {
    const char* name = sigabbrev_np(static_cast<int>(*signal));
    text = name ? std::string("SIG") + name : "signal " + std::to_string(static_cast<int>(*signal));
  }
  const std::string reason = json::as_string(field(exit, "reason"));
  if (reason != "exit" && reason != "signal" && !reason.empty()) {
    text += (text.empty() ? "" : " ") + reason;
  }
  return text.empty() ? "-" : text;
}

std::string replica_id(const json::Value& replica) { return json::as_string(field(replica, "id")); }

struct Row {
  const json::Value* replica;
  std::size_t file_order;
};

std::vector<Row> rows_of(const json::Value& status) {
  std::vector<Row> rows;
  for (const auto& service : json::as_array(field(status, "services"))) {
    for (const auto& replica : json::as_array(field(service, "replicas"))) {
      rows.push_back({&replica, rows.size()});
    }
  }
  return rows;
}

void sort_rows(std::vector<Row>& rows, TopSort sort, const std::map<std::string, double>& cpu) {
  auto key = [&](const Row& row) -> double {
    const json::Value& replica = *row.replica;
    switch (sort) {
      case TopSort::name:
        return 0;
      case TopSort::cpu: {
        auto it = cpu.find(replica_id(replica));
        return it == cpu.end() ? -1 : it->second;
      }
      case TopSort::memory:
        return memory_bytes(replica).value_or(-1);
      case TopSort::restarts:
        return number(field(replica, "restarts")).value_or(0);
    }
    return 0;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    const double ka = key(a), kb = key(b);
    return ka != kb ? ka > kb : a.file_order < b.file_order;
  });
}

std::string title_line(const TopData& data, const TopScreen& screen) {
  const json::Value& status = data.status;
  std::string left =
      json::as_string(field(status, "name")) + ": " + json::as_string(field(status, "state"));
  if (auto pid = number(field(status, "pid"))) {
    left += "  pid " + std::to_string(static_cast<long long>(*pid));
  }
  if (auto uptime = number(field(status, "uptime_ms"))) {
    left += "  up " + human_duration(static_cast<std::int64_t>(*uptime));
  }
  if (!data.problem.empty()) left += "  (" + data.problem + ")";
  if (!screen.interactive) return left;
  const std::string right =
      std::string("sort:") + sort_name(screen.sort) + "  q quit s sort up/down l log";
  const int gap = screen.width - static_cast<int>(left.size() + right.size());
  return gap >= 2 ? left + std::string(static_cast<std::size_t>(gap), ' ') + right
                  : left + "  sort:" + sort_name(screen.sort);
}

std::vector<std::string> service_lines(const json::Value& status) {
  std::vector<std::string> lines;
  for (const auto& service : json::as_array(field(status, "services"))) {
    const auto ready = number(field(service, "ready")).value_or(0);
    const auto desired = number(field(service, "desired")).value_or(0);
    std::string line = json::as_string(field(service, "name")) + "  " +
                       std::to_string(static_cast<long long>(ready)) + "/" +
                       std::to_string(static_cast<long long>(desired)) + " ready";
    const json::Value& rollout = field(service, "rollout");
    if (rollout.is_string()) line += "  rollout " + json::as_string(rollout);
    if (json::as_string(rollout) == "running") {
      const auto replicas = json::as_array(field(service, "replicas")).size();
      line += " (" + std::to_string(replicas) + " replicas for " +
              std::to_string(static_cast<long long>(desired)) + ")";
    }
    lines.push_back(line);
  }
  return lines;
}

std::string table_header(int memory_width) {
  return "  " + pad("REPLICA", kIdWidth) + " " + pad("STATE", kStateWidth) + " " +
         pad("HEALTH", kHealthWidth) + " " + pad("UPTIME", kUptimeWidth) + " " +
         pad("RST", kRestartsWidth, true) + " " + pad("LAST EXIT", kExitWidth) + " " +
         pad("CPU%", kCpuWidth, true) + " " + pad("MEMORY", memory_width) + " " +
         pad("REQS", kRequestsWidth, true);
}

std::string replica_line(const json::Value& replica, bool selected, int memory_width,
                         const std::map<std::string, double>& cpu) {
  const std::string id = replica_id(replica);
  const auto uptime = number(field(replica, "uptime_ms"));
  const auto requests = number(field(replica, "requests"));
  std::string cpu_text = "-";
  if (auto it = cpu.find(id); it != cpu.end()) {
    char text[16];
    std::snprintf(text, sizeof text, "%.1f", std::min(it->second, 9999.0));
    cpu_text = text;
  }
  return std::string(selected ? "> " : "  ") + pad(id, kIdWidth) + " " +
         pad(json::as_string(field(replica, "state")), kStateWidth) + " " +
         pad(json::as_string(field(replica, "health")), kHealthWidth) + " " +
         pad(uptime ? human_duration(static_cast<std::int64_t>(*uptime)) : "-", kUptimeWidth) +
         " " +
         pad(std::to_string(static_cast<long long>(number(field(replica, "restarts")).value_or(0))),
             kRestartsWidth, true) +
         " " + pad(last_exit_cell(replica), kExitWidth) + " " + pad(cpu_text, kCpuWidth, true) +
         " " + memory_cell(replica, memory_width) + " " +
         pad(requests ? std::to_string(static_cast<long long>(*requests)) : "-", kRequestsWidth,
             true);
}

// "12:03:04 exit web.1: killed ..." (UTC time of day).
std::string event_line(const DeploymentEvent& event) {
  const std::time_t seconds = static_cast<std::time_t>(event.time_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[16];
  std::snprintf(stamp, sizeof stamp, "%02d:%02d:%02d", utc.tm_hour, utc.tm_min, utc.tm_sec);
  const std::string& who = !event.replica.empty() ? event.replica : event.service;
  return std::string(stamp) + " " + event.kind + (who.empty() ? "" : " " + who) + ": " +
         event.message;
}

// "12:03:04 err | text" for a log file line; the line itself if it is not in the format.
std::string log_line(const std::string& line) {
  std::string_view text = line;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  auto parsed = logs::parse_line(text);
  if (!parsed || parsed->time.size() < 19) return std::string(text);
  return std::string(parsed->time.substr(11, 8)) + " " + std::string(parsed->stream) + " | " +
         std::string(parsed->text);
}

std::vector<TopLine> log_view(const TopData& data, const TopScreen& screen, const std::string& id) {
  std::vector<TopLine> lines{{id + " log (l or Esc: back, q: quit)", true}};
  std::size_t room = data.log_lines.size();
  if (screen.height > 0)
    room = std::min(room, static_cast<std::size_t>(std::max(screen.height - 1, 0)));
  if (data.log_lines.empty()) lines.push_back({"(no log lines)"});
  for (auto it = data.log_lines.end() - static_cast<long>(room); it != data.log_lines.end(); ++it) {
    lines.push_back({log_line(*it)});
  }
  return lines;
}

// The table's rows: all of them, or a window of `room` rows that holds the selected one (the
// last row then says how many more there are).
std::vector<TopLine> table_rows(const std::vector<Row>& rows, const std::string& selected, int room,
                                int memory_width, const TopScreen& screen,
                                const std::map<std::string, double>& cpu) {
  std::size_t chosen = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (replica_id(*rows[i].replica) == selected) chosen = i;
  }
  std::size_t first = 0, count = rows.size();
  const bool cut = room > 0 && rows.size() > static_cast<std::size_t>(room);
  if (cut) {
    count = static_cast<std::size_t>(std::max(room - 1, 1));
    if (chosen >= count) first = chosen - count + 1;
  }
  std::vector<TopLine> lines;
  for (std::size_t i = first; i < first + count && i < rows.size(); ++i) {
    const bool is_selected = screen.interactive && i == chosen;
    lines.push_back({replica_line(*rows[i].replica, is_selected, memory_width, cpu), is_selected});
  }
  if (cut && room > 1) {
    lines.push_back({"  ... " + std::to_string(rows.size() - count) + " more (up/down scroll)"});
  }
  return lines;
}

}  // namespace

const char* sort_name(TopSort sort) {
  switch (sort) {
    case TopSort::name:
      return "name";
    case TopSort::cpu:
      return "cpu";
    case TopSort::memory:
      return "memory";
    case TopSort::restarts:
      return "restarts";
  }
  return "name";
}

TopSort next_sort(TopSort sort) {
  switch (sort) {
    case TopSort::name:
      return TopSort::cpu;
    case TopSort::cpu:
      return TopSort::memory;
    case TopSort::memory:
      return TopSort::restarts;
    case TopSort::restarts:
      return TopSort::name;
  }
  return TopSort::name;
}

std::vector<std::string> replica_order(const json::Value& status, TopSort sort,
                                       const std::map<std::string, double>& cpu_percent) {
  std::vector<Row> rows = rows_of(status);
  sort_rows(rows, sort, cpu_percent);
  std::vector<std::string> ids;
  for (const auto& row : rows) ids.push_back(replica_id(*row.replica));
  return ids;
}

std::string move_selection(const std::vector<std::string>& order, const std::string& selected,
                           int delta) {
  if (order.empty()) return "";
  auto it = std::find(order.begin(), order.end(), selected);
  if (it == order.end()) return order.front();
  const long at =
      std::clamp<long>((it - order.begin()) + delta, 0, static_cast<long>(order.size()) - 1);
  return order[static_cast<std::size_t>(at)];
}

double cpu_percent(double cpu_before, double cpu_after, double wall_seconds) {
  if (wall_seconds <= 0 || cpu_after < cpu_before) return 0;
  return (cpu_after - cpu_before) / wall_seconds * 100;
}

std::vector<TopLine> render_top(const TopData& data, const TopScreen& screen) {
  std::vector<Row> rows = rows_of(data.status);
  sort_rows(rows, screen.sort, data.cpu_percent);
  std::string selected = screen.selected;
  const bool known = std::any_of(rows.begin(), rows.end(), [&](const Row& row) {
    return replica_id(*row.replica) == selected;
  });
  if (!known) selected = rows.empty() ? "" : replica_id(*rows.front().replica);

  std::vector<TopLine> lines;
  if (screen.log && !selected.empty()) {
    lines = log_view(data, screen, selected);
  } else {
    const int memory_width =
        screen.width > 0 ? std::clamp(screen.width - kFixedWidth, kMinMemoryWidth, kMaxMemoryWidth)
                         : kMaxMemoryWidth;
    lines.push_back({title_line(data, screen)});
    for (auto& line : service_lines(data.status)) lines.push_back({std::move(line)});
    lines.push_back({table_header(memory_width)});
    const int used = static_cast<int>(lines.size());
    const std::size_t event_count = std::min(data.events.size(), kTopEvents);
    int room = 0, events_shown = static_cast<int>(event_count);
    if (screen.height > 0) {
      const int free = std::max(screen.height - used, 0);
      const int least_rows = std::min(static_cast<int>(rows.size()), 3);
      // The events get what the first rows leave (and a header line), the table the rest.
      events_shown = std::clamp(free - least_rows - 1, 0, static_cast<int>(event_count));
      room = free - (events_shown > 0 ? events_shown + 1 : 0);
    }
    for (auto& row : table_rows(rows, selected, room, memory_width, screen, data.cpu_percent)) {
      lines.push_back(std::move(row));
    }
    if (events_shown > 0) {
      lines.push_back({"-- events --"});
      for (auto it = data.events.end() - events_shown; it != data.events.end(); ++it) {
        lines.push_back({event_line(*it)});
      }
    }
  }
  if (screen.height > 0 && static_cast<int>(lines.size()) > screen.height) {
    lines.resize(static_cast<std::size_t>(screen.height));
  }
  for (auto& line : lines) {
    line.text = fit(printable(line.text), screen.width);
    if (!screen.interactive) {
      while (!line.text.empty() && line.text.back() == ' ') line.text.pop_back();
    }
  }
  return lines;
}

}  // namespace deployctl
