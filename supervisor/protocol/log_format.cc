#include "log_format.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace deployctl::logs {
namespace {

constexpr std::string_view kPreStart = "pre_start";

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool is_service_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name) {
    if (!is_name_char(c)) return false;
  }
  return true;
}

bool is_number(std::string_view text) {
  if (text.empty() || text.size() > 9) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::string file_name(std::string_view base) { return std::string(base) + ".log"; }

std::string rotated_name(std::string_view base, int n) {
  return n == 0 ? file_name(base) : file_name(base) + "." + std::to_string(n);
}

std::string format_time(std::chrono::system_clock::time_point at) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
  const int millis = static_cast<int>(((ms % 1000) + 1000) % 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  return text;
}

std::string format_line(std::string_view time, std::string_view source, bool is_stderr,
                        std::string_view text) {
  std::string line;
  line.reserve(time.size() + source.size() + text.size() + 10);
  line.append(time).append(" ").append(source).append(is_stderr ? " err | " : " out | ");
  line.append(text).append("\n");
  return line;
}

std::optional<ParsedLine> parse_line(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  ParsedLine parsed;
  const auto first = line.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = line.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  parsed.time = line.substr(0, first);
  parsed.source = line.substr(first + 1, second - first - 1);
  parsed.stream = line.substr(second + 1, 3);
  if ((parsed.stream != "out" && parsed.stream != "err") ||
      line.substr(second + 4, 3) != " | ") {
    return std::nullopt;
  }
  parsed.text = line.substr(std::min(line.size(), second + 7));
  return parsed;
}

std::optional<Selector> parse_selector(std::string_view text, std::string* error) {
  if (text.empty()) return Selector{};
  const auto dot = text.find('.');
  const std::string_view base = text.substr(0, dot);
  const std::string_view rest = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  const bool ok = base == kPreStart ? (dot == std::string_view::npos || !rest.empty())
                                    : is_service_name(base) &&
                                          (dot == std::string_view::npos || is_number(rest));
  if (!ok) {
    *error = "'" + std::string(text) +
             "' names no service, replica or step: use SERVICE, SERVICE.N (e.g. web.2), "
             "pre_start or pre_start.STEP";
    return std::nullopt;
  }
  return Selector{std::string(base), dot == std::string_view::npos ? "" : std::string(text)};
}

bool selects(const Selector& selector, std::string_view line) {
  if (selector.source.empty()) return true;
  const auto parsed = parse_line(line);
  return parsed && parsed->source == selector.source;
}

bool needs_rotation(std::uint64_t size, std::uint64_t incoming, std::uint64_t max_size) {
  return size > 0 && size + incoming > max_size;
}

std::vector<Rename> rotation_renames(std::string_view base, int keep) {
  std::vector<Rename> renames;
  for (int n = keep - 1; n >= 0; --n) {
    renames.push_back({rotated_name(base, n), rotated_name(base, n + 1)});
  }
  return renames;
}

std::vector<std::string> journal_fields(const JournalSource& source, bool is_stderr,
                                        std::string_view text) {
  return {
      "MESSAGE=" + std::string(text),
      "PRIORITY=" + std::to_string(is_stderr ? kPriorityStderr : kPriorityStdout),
      "SYSLOG_IDENTIFIER=" + source.service,
      "SYSLOG_PID=" + std::to_string(source.pid),
      "DEPLOYCTL_DEPLOYMENT=" + source.deployment,
      "DEPLOYCTL_SERVICE=" + source.service,
      "DEPLOYCTL_REPLICA=" + source.replica,
      "DEPLOYCTL_REPLICA_PID=" + std::to_string(source.pid),
      std::string("DEPLOYCTL_STREAM=") + (is_stderr ? "stderr" : "stdout"),
  };
}

bool is_journal_stream(std::string_view variable, unsigned long long dev,
                       unsigned long long inode) {
  const auto colon = variable.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long want_dev = 0, want_inode = 0;
  const char* end = variable.data() + variable.size();
  auto [dev_end, dev_ec] = std::from_chars(variable.data(), variable.data() + colon, want_dev);
  auto [ino_end, ino_ec] = std::from_chars(variable.data() + colon + 1, end, want_inode);
  if (dev_ec != std::errc() || ino_ec != std::errc() || dev_end != variable.data() + colon ||
      ino_end != end) {
    return false;
  }
  return want_dev == dev && want_inode == inode;
}

}  // namespace deployctl::logs
