#include "events.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace deployctl {

const DeploymentEvent& EventHistory::add(DeploymentEvent event) {
  event.seq = next_seq_++;
  if (events_.size() == kCapacity) events_.pop_front();
  events_.push_back(std::move(event));
  return events_.back();
}

json::Value event_json(const DeploymentEvent& event) {
  json::Value value;
  value["seq"] = event.seq;
  value["time_ms"] = event.time_ms;
  value["kind"] = event.kind;
  value["service"] = event.service;
  value["replica"] = event.replica;
  value["message"] = event.message;
  json::Array lines;
  for (const auto& line : event.lines) lines.push_back(line);
  value["lines"] = std::move(lines);
  return value;
}

std::optional<DeploymentEvent> event_from_json(const json::Value& value) {
  if (!value.is_object() || !json::find(value, "kind")) return std::nullopt;
  DeploymentEvent event;
  event.seq = static_cast<std::uint64_t>(json::as_int(json::get(value, "seq"), 0));
  event.time_ms = json::as_int(json::get(value, "time_ms"), 0);
  event.kind = json::as_string(json::get(value, "kind"));
  event.service = json::as_string(json::get(value, "service"));
  event.replica = json::as_string(json::get(value, "replica"));
  event.message = json::as_string(json::get(value, "message"));
  if (const auto* lines = json::find(value, "lines"); lines && lines->is_array()) {
    for (const auto& line : json::as_array(*lines)) event.lines.push_back(json::as_string(line));
  }
  return event;
}

std::int64_t unix_time_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string event_text(const DeploymentEvent& event) {
  const std::time_t seconds = static_cast<std::time_t>(event.time_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[48];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(event.time_ms % 1000));
  const std::string& who = !event.replica.empty() ? event.replica : event.service;
  std::string text = std::string(stamp) + " " + event.kind;
  if (!who.empty()) text += " " + who;
  text += ": " + event.message + "\n";
  for (const auto& line : event.lines) text += "    " + who + " | " + line + "\n";
  return text;
}

}  // namespace deployctl
