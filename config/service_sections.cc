// The sub-tables of a service: restart, health, memory, stop, rollout.
#include <limits>

#include "spec_fields.h"

namespace deployctl::detail {
namespace {

constexpr std::int64_t kMaxCount = std::numeric_limits<int>::max();

template <typename T>
void assign(std::optional<T> value, T* field) {
  if (value) *field = *value;
}

// Reports when `smaller` is not below (or, with allow_equal, not at most) `larger`, at
// whichever of the two keys the file sets; skipped when either failed to read.
template <typename T, typename Format>
void check_order(TableReader& reader, std::string_view smaller, T small_value,
                 std::string_view larger, T large_value, bool allow_equal, Format format) {
  if (reader.failed(smaller) || reader.failed(larger)) return;
  if (small_value < large_value || (allow_equal && small_value == large_value)) return;
  const std::string_view at = reader.find(smaller) ? smaller : larger;
  if (!reader.find(at)) return;
  reader.error_at(at, std::string(smaller) + " (" + format(small_value) + ") must be " +
                          (allow_equal ? "at most " : "less than ") + std::string(larger) +
                          " (" + format(large_value) + ")");
}

void read_backoff(TableReader& restart, BackoffSpec* backoff) {
  const toml::table* table = restart.subtable(
      "backoff", "a table such as backoff = { initial = \"100ms\", max = \"30s\" }");
  if (!table) return;
  TableReader reader(*table, restart.key_path("backoff"), restart.diag(),
                     {"initial", "max", "reset_after", "jitter"});
  assign(reader.duration("initial"), &backoff->initial);
  assign(reader.duration("max"), &backoff->max);
  assign(reader.duration("reset_after"), &backoff->reset_after);
  assign(reader.number("jitter", 0.0, 1.0), &backoff->jitter);
  check_order(reader, "initial", backoff->initial, "max", backoff->max, true, format_duration);
}

void read_crash_loop(TableReader& restart, CrashLoopSpec* crash_loop) {
  const toml::table* table = restart.subtable(
      "crash_loop", "a table such as crash_loop = { restarts = 5, within = \"60s\" }");
  if (!table) return;
  TableReader reader(*table, restart.key_path("crash_loop"), restart.diag(),
                     {"restarts", "within"});
  if (auto restarts = reader.integer("restarts", 1, kMaxCount)) {
    crash_loop->restarts = static_cast<int>(*restarts);
  }
  assign(reader.duration("within"), &crash_loop->within);
}

std::optional<HealthKind> health_kind(const std::string& name) {
  if (name == "control") return HealthKind::control;
  if (name == "http") return HealthKind::http;
  if (name == "tcp") return HealthKind::tcp;
  if (name == "exec") return HealthKind::exec;
  if (name == "none") return HealthKind::none;
  return std::nullopt;
}

std::string format_size(std::uint64_t bytes) {
  constexpr std::string_view kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  while (unit + 1 < std::size(kUnits) && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return std::to_string(bytes) + std::string(kUnits[unit]);
}

bool is_http_path(std::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  for (char c : path) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) return false;
  }
  return true;
}

void read_health_path(TableReader& reader, HealthSpec* health) {
  if (health->kind != HealthKind::http) {
    if (reader.find("path")) reader.error_at("path", "path is only used with kind = \"http\"");
    return;
  }
  health->path = "/healthz";
  if (auto path = reader.string("path")) {
    if (is_http_path(*path)) {
      health->path = *path;
    } else {
      reader.error_at("path", "expected a URL path starting with '/' and without spaces, got " +
                                  quote(*path));
    }
  }
}

void read_health_command(TableReader& reader, const PlaceholderRules& rules,
                         HealthSpec* health) {
  if (health->kind != HealthKind::exec) {
    if (reader.find("command")) {
      reader.error_at("command", "command is only used with kind = \"exec\"");
    }
    return;
  }
  if (!reader.find("command")) {
    reader.error_missing("command", "kind = \"exec\" needs a command, e.g. [\"./check\"]");
    return;
  }
  assign(read_command(reader, "command", rules), &health->command);
}

// http and tcp checks connect to the replica's {port} or the shared listen address.
void check_health_target(TableReader& reader, const ServiceFacts& facts, HealthKind kind) {
  if (kind != HealthKind::http && kind != HealthKind::tcp) return;
  if (facts.has_port || facts.has_listen) return;
  reader.error_at("kind", std::string("kind = \"") + (kind == HealthKind::http ? "http" : "tcp") +
                              "\" needs the service to set port or listen, to know where to "
                              "connect");
}

}  // namespace

void read_restart(TableReader& service, RestartSpec* restart) {
  const toml::table* table =
      service.subtable("restart", "a table such as [services.NAME.restart]");
  if (!table) return;
  TableReader reader(*table, service.key_path("restart"), service.diag(),
                     {"policy", "backoff", "crash_loop"});
  if (auto policy = reader.choice("policy", {"always", "on-failure", "never"})) {
    restart->policy = *policy == "always"       ? RestartPolicy::always
                      : *policy == "on-failure" ? RestartPolicy::on_failure
                                                : RestartPolicy::never;
  }
  read_backoff(reader, &restart->backoff);
  read_crash_loop(reader, &restart->crash_loop);
}

void read_health(TableReader& service, const ServiceFacts& facts, const PlaceholderRules& rules,
                 HealthSpec* health) {
  const toml::table* table = service.subtable("health", "a table such as [services.NAME.health]");
  if (!table) return;
  TableReader reader(*table, service.key_path("health"), service.diag(),
                     {"kind", "path", "command", "interval", "timeout", "failures",
                      "start_period"});
  const auto kind = reader.choice("kind", {"control", "http", "tcp", "exec", "none"});
  if (kind) health->kind = *health_kind(*kind);
  if (!reader.failed("kind")) {
    read_health_path(reader, health);
    read_health_command(reader, rules, health);
    if (kind) check_health_target(reader, facts, health->kind);
  }
  assign(reader.duration("interval"), &health->interval);
  assign(reader.duration("timeout"), &health->timeout);
  assign(reader.duration("start_period"), &health->start_period);
  if (auto failures = reader.integer("failures", 1, kMaxCount)) {
    health->failures = static_cast<int>(*failures);
  }
  check_order(reader, "timeout", health->timeout, "interval", health->interval, true,
              format_duration);
}

void read_memory(TableReader& service, MemorySpec* memory) {
  const toml::table* table = service.subtable("memory", "a table such as [services.NAME.memory]");
  if (!table) return;
  TableReader reader(*table, service.key_path("memory"), service.diag(),
                     {"max", "restart_above"});
  memory->max = reader.size("max");
  memory->restart_above = reader.size("restart_above");
  if (memory->max && memory->restart_above) {
    check_order(reader, "restart_above", *memory->restart_above, "max", *memory->max, false,
                format_size);
  }
}

void read_stop(TableReader& service, StopSpec* stop) {
  const toml::table* table = service.subtable("stop", "a table such as [services.NAME.stop]");
  if (!table) return;
  TableReader reader(*table, service.key_path("stop"), service.diag(), {"signal", "timeout"});
  if (const toml::node* node = reader.find("signal")) {
    std::optional<int> signal;
    if (const auto* name = node->as_string()) signal = parse_signal(name->get());
    if (const auto* number = node->as_integer()) {
      if (number->get() > 0 && number->get() < 1000) {
        signal = parse_signal(std::to_string(number->get()));
      }
    }
    if (signal) {
      stop->signal = *signal;
    } else {
      reader.error_at("signal", "expected a signal name such as \"SIGTERM\" or a signal "
                                "number, got " + describe(*node));
    }
  }
  assign(reader.duration("timeout"), &stop->timeout);
}

void read_rollout(TableReader& service, RolloutSpec* rollout) {
  const toml::table* table =
      service.subtable("rollout", "a table such as [services.NAME.rollout]");
  if (!table) return;
  TableReader reader(*table, service.key_path("rollout"), service.diag(),
                     {"max_surge", "max_unavailable"});
  if (auto surge = reader.integer("max_surge", 0, 1000)) {
    rollout->max_surge = static_cast<int>(*surge);
  }
  if (auto unavailable = reader.integer("max_unavailable", 0, 1000)) {
    rollout->max_unavailable = static_cast<int>(*unavailable);
  }
  if (rollout->max_surge == 0 && rollout->max_unavailable == 0 && !reader.failed("max_surge") &&
      !reader.failed("max_unavailable")) {
    reader.error_at("max_surge", "max_surge and max_unavailable cannot both be 0: a rollout "
                                 "could never replace a replica");
  }
}

}  // namespace deployctl::detail
