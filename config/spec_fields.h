// Internal to config/: fields shared by services and pre_start steps (command, env, paths),
// and the per-section readers that fill a ServiceSpec.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spec.h"
#include "toml_reader.h"

namespace deployctl::detail {

// Which placeholders a value may use, and why {port} or {replica} may not.
struct PlaceholderRules {
  bool replica = true;
  bool port = true;
  std::string_view no_replica_reason;  // shown when {replica} is used but not allowed
  std::string_view no_port_reason;     // shown when {port} is used but not allowed
  bool tls = false;                    // {tls_cert} and {tls_key}
  std::string_view no_tls_reason;      // shown when they are used but not allowed
};

// argv from an array of strings or a string split by split_command.
std::optional<std::vector<std::string>> read_command(TableReader& reader, std::string_view key,
                                                     const PlaceholderRules& rules);

// NAME = value pairs in file order; numbers and booleans become their text.
std::optional<EnvList> read_env(TableReader& reader, std::string_view key,
                                const PlaceholderRules& rules);

// A non-empty path; relative paths are resolved against base (absolute, normalised).
// execve refuses (E2BIG) a single argument or "KEY=VALUE" longer than the kernel's
// MAX_ARG_STRLEN (128 KiB), and an argv + environment larger than ARG_MAX (2 MiB with the
// default 8 MiB stack). A spec may use at most half of that, so the inherited environment and
// the supervisor's own variables still fit.
inline constexpr std::size_t kMaxExecString = 128 * 1024 - 1;
inline constexpr std::size_t kMaxExecTotal = 1024 * 1024;
// Reports, at `env_key` (or `command_key` without env), a command + env over kMaxExecTotal
// (each string counted with its NUL and its pointer, as the kernel does).
void check_exec_size(TableReader& reader, std::string_view command_key, std::string_view env_key,
                     const std::vector<std::string>& command, const EnvList& env);

std::optional<std::string> read_path(TableReader& reader, std::string_view key,
                                     const std::filesystem::path& base);

// base / path, normalised, without a trailing separator.
std::string resolve_path(const std::filesystem::path& base, const std::string& path);

// What the health section needs to know about the rest of its service.
struct ServiceFacts {
  bool has_port = false;
  bool has_listen = false;
};

// Listen addresses already taken, by service name, to catch one address bound twice.
using ListenClaims = std::vector<std::pair<ListenAddress, std::string>>;

// Why address may not be used by service: listed twice, or taken by another service.
// nullopt if free.
std::optional<std::string> claim_conflict(const ListenAddress& address, const std::string& service,
                                          const ListenClaims& claims);

// Reads the [services.NAME] table; every problem goes to diag.
ServiceSpec read_service(const toml::table& table, const std::string& name,
                         const std::filesystem::path& spec_dir, ListenClaims* claims,
                         Diagnostics& diag);

void read_restart(TableReader& service, RestartSpec* restart);
void read_health(TableReader& service, const ServiceFacts& facts, const PlaceholderRules& rules,
                 HealthSpec* health);
void read_memory(TableReader& service, MemorySpec* memory);
void read_stop(TableReader& service, StopSpec* stop);
void read_rollout(TableReader& service, RolloutSpec* rollout);
// [services.NAME.tls]; an acme http_listen joins claims.
void read_tls(TableReader& service, const std::string& name, const ServiceFacts& facts,
              const std::filesystem::path& spec_dir, ListenClaims* claims,
              std::optional<TlsSpec>* tls);

// The top-level [logs] table.
void read_logs(TableReader& root, const std::filesystem::path& spec_dir, LogsSpec* logs);

// The top-level [metrics] table; `services` are checked for a listen address it would reuse.
void read_metrics(TableReader& root, const std::vector<ServiceSpec>& services,
                  MetricsSpec* metrics);

// The top-level [export] table ([export.kubernetes] image).
void read_export(TableReader& root, ExportSpec* settings);

// Every key of the document -> where it was written (LoadResult::positions).
SourceMap key_positions(const toml::table& root);

}  // namespace deployctl::detail
