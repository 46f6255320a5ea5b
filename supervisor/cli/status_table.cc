#include "status_table.h"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "replica_machine.h"

namespace deployctl {

std::string human_duration(std::int64_t ms) {
  std::int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  if (s < 86400) return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m";
  return std::to_string(s / 86400) + "d" + std::to_string(s % 86400 / 3600) + "h";
}

namespace {

std::string human_bytes(const json::Value& value) {
  if (!value.is_number()) return "-";
  double bytes = json::as_double(value);
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
    const json::Value& value = json::get(exit, key);
    if (!value.is_number()) return std::nullopt;
    return static_cast<int>(json::as_int(value));
  };
  const auto code = number("code"), signal = number("signal");
  std::string text = code || signal ? describe_exit(code, signal) : "";
  std::string reason = json::as_string(json::get(exit, "reason"));
  if (reason != "exit" && reason != "signal")
    text += (text.empty() ? "" : " ") + std::string("[") + reason + "]";
  return text;
}

// "now/max" for a replica under memory limits ("now/soft" without max), else its RSS.
std::string describe_memory(const json::Value& memory, const json::Value& rss) {
  const auto* bytes = memory.is_object() ? json::find(memory, "bytes") : nullptr;
  if (!bytes || !bytes->is_number()) return human_bytes(rss);
  const auto* max = json::find(memory, "max");
  const auto* soft = json::find(memory, "restart_above");
  const auto* limit = max && max->is_number() ? max : soft;
  std::string text = human_bytes(*bytes);
  if (limit && limit->is_number()) text += "/" + human_bytes(*limit);
  return text;
}

long long memory_restarts(const json::Value& memory) {
  const auto* restarts = memory.is_object() ? json::find(memory, "restarts") : nullptr;
  return restarts && restarts->is_number() ? json::as_int(*restarts) : 0;
}

// "  tls: file CN=a (issuer CN=b), expires 2026-01-31 12:00:00 UTC (30 days left); last
// renewal 2026-01-01 00:00:00 UTC: ok: rolled out" for a service with [tls]; "" without.
std::string describe_tls(const json::Value& service) {
  const auto* tls = json::find(service, "tls");
  if (!tls || !tls->is_object()) return "";
  auto text = [&](const json::Value& from, const char* key) {
    const auto* value = json::find(from, key);
    return value && value->is_string() ? json::as_string(*value) : std::string();
  };
  std::string line = "  tls: " + text(*tls, "source") + " ";
  if (const std::string error = text(*tls, "error"); !error.empty()) {
    line += text(*tls, "cert") + ": " + error;
  } else {
    const auto* days = json::find(*tls, "days_left");
    const long long left = days && days->is_number() ? json::as_int(*days) : 0;
    line += text(*tls, "subject") + " (issuer " + text(*tls, "issuer") + "), expires " +
            text(*tls, "not_after") + " (" +
            (left < 0 ? std::string("expired") : std::to_string(left) + " days left") + ")";
  }
  const auto* last = json::find(*tls, "last_renewal");
  if (last && last->is_object() && !text(*last, "at").empty()) {
    line += "; last renewal " + text(*last, "at") + ": " + text(*last, "result");
  }
  if (const std::string next = text(*tls, "next_renewal"); !next.empty()) {
    line += "; next " + next;  // acme
  }
  return line;
}

}  // namespace

void print_status_table(const json::Value& status) {
  const auto* mode = json::find(status, "memory_mode");
  std::printf("%s: %s (supervisor pid %lld, memory limits: %s)\n",
              json::as_string(json::get(status, "name")).c_str(),
              json::as_string(json::get(status, "state")).c_str(),
              static_cast<long long>(json::as_int(json::get(status, "pid"))),
              mode && mode->is_string() ? json::as_string(*mode).c_str() : "?");
  std::printf("%-12s %-8s %-11s %-10s %-8s %-9s %-28s %-16s %s\n", "REPLICA", "PID", "STATE",
              "HEALTH", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "MEM-RESTARTS");
  for (const auto& service : json::as_array(json::get(status, "services"))) {
    for (const auto& replica : json::as_array(json::get(service, "replicas"))) {
      auto field = [&](const char* key) -> const json::Value& { return json::get(replica, key); };
      std::string pid = field("pid").is_number() ? std::to_string(json::as_int(field("pid"))) : "-";
      std::string uptime =
          field("uptime_ms").is_number() ? human_duration(json::as_int(field("uptime_ms"))) : "-";
      std::printf("%-12s %-8s %-11s %-10s %-8s %-9lld %-28s %-16s %lld\n",
                  json::as_string(field("id")).c_str(), pid.c_str(),
                  json::as_string(field("state")).c_str(), json::as_string(field("health")).c_str(),
                  uptime.c_str(), static_cast<long long>(json::as_int(field("restarts"))),
                  describe_last_exit(field("last_exit")).c_str(),
                  describe_memory(field("memory"), field("rss_bytes")).c_str(),
                  static_cast<long long>(memory_restarts(field("memory"))));
    }
    std::printf("%-12s %lld/%lld ready\n",
                (json::as_string(json::get(service, "name")) + ":").c_str(),
                static_cast<long long>(json::as_int(json::get(service, "ready"))),
                static_cast<long long>(json::as_int(json::get(service, "desired"))));
    if (const std::string tls = describe_tls(service); !tls.empty()) {
      std::printf("%s\n", tls.c_str());
    }
  }
}

}  // namespace deployctl
