#include "status_table.h"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "replica_machine.h"

namespace deployctl {
namespace {

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

}  // namespace

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

}  // namespace deployctl
