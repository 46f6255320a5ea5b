// The deployment spec: an immutable, validated value built from deploy.toml.
// Nothing downstream of config/ sees TOML. All durations are milliseconds.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "listen_address.h"

namespace deployctl {

using Duration = std::chrono::milliseconds;
using EnvList = std::vector<std::pair<std::string, std::string>>;  // in file order

enum class RestartPolicy { always, on_failure, never };
enum class HealthKind { control, http, tcp, exec, none };

struct BackoffSpec {
  Duration initial{100};
  Duration max{30000};
  Duration reset_after{60000};
  double jitter = 0.2;  // 0..1: each delay is scaled by a factor in [1 - jitter, 1 + jitter]

  bool operator==(const BackoffSpec&) const = default;
};

struct CrashLoopSpec {
  int restarts = 5;  // this many restarts...
  Duration within{60000};  // ...inside this window means crash-loop

  bool operator==(const CrashLoopSpec&) const = default;
};

struct RestartSpec {
  RestartPolicy policy = RestartPolicy::always;
  BackoffSpec backoff;
  CrashLoopSpec crash_loop;

  bool operator==(const RestartSpec&) const = default;
};

struct HealthSpec {
  HealthKind kind = HealthKind::control;
  std::string path;                  // http only
  std::vector<std::string> command;  // exec only
  Duration interval{1000};
  Duration timeout{500};
  int failures = 3;
  Duration start_period{30000};

  bool operator==(const HealthSpec&) const = default;
};

struct MemorySpec {
  std::optional<std::uint64_t> max;            // bytes
  std::optional<std::uint64_t> restart_above;  // bytes

  bool operator==(const MemorySpec&) const = default;
};

struct StopSpec {
  int signal = SIGTERM;
  Duration timeout{30000};

  bool operator==(const StopSpec&) const = default;
};

struct RolloutSpec {
  int max_surge = 1;
  int max_unavailable = 0;

  bool operator==(const RolloutSpec&) const = default;
};

inline constexpr std::string_view kLetsEncryptDirectory =
    "https://acme-v02.api.letsencrypt.org/directory";

// [services.NAME.tls] acme = { ... }: certificates obtained and renewed by the supervisor.
struct AcmeSpec {
  std::vector<std::string> domains;  // at least one; the first names the certificate files
  std::string email;                 // may be empty (no account contact)
  std::string directory{kLetsEncryptDirectory};  // https:// URL of the ACME directory
  ListenAddress http_listen;                     // HTTP-01 answers and the redirect to https://
  std::string ca_root;  // absolute PEM file of CAs trusted for `directory` (a test CA); or empty

  bool operator==(const AcmeSpec&) const = default;
};

// [services.NAME.tls]: exactly one of cert + key files, or acme.
struct TlsSpec {
  std::string cert;  // absolute PEM chain; empty with acme
  std::string key;   // absolute PEM private key; empty with acme
  std::optional<AcmeSpec> acme;

  bool operator==(const TlsSpec&) const = default;
};

// How replicas get the service's `listen` socket: one socket all replicas inherit, or one
// SO_REUSEPORT socket per replica that the supervisor steers connections among
// (docs/spec.md, `sockets`).
enum class SocketMode { shared, per_replica };

struct ServiceSpec {
  std::string name;
  std::vector<std::string> command;  // argv; may contain {replica} and {port}
  int replicas = 1;                  // "auto" is resolved to the CPU count at load time
  bool replicas_auto = false;
  std::vector<ListenAddress> listen;
  SocketMode sockets = SocketMode::shared;  // per_replica: exactly one `listen` address
  std::optional<std::uint16_t> port;  // per-replica base port: replica i gets port + i
  EnvList env;                        // may contain {replica} and {port}
  std::string env_file;               // absolute, or empty
  std::string working_dir;            // absolute (resolved against the spec file's directory)
  std::string user;
  std::string group;
  RestartSpec restart;
  HealthSpec health;
  MemorySpec memory;
  StopSpec stop;
  RolloutSpec rollout;
  std::optional<TlsSpec> tls;  // {tls_cert} / {tls_key} are allowed only with it

  bool operator==(const ServiceSpec&) const = default;
};

struct PreStartStep {
  std::string name;
  std::vector<std::string> command;
  Duration timeout{60000};
  EnvList env;
  std::string working_dir;  // absolute

  bool operator==(const PreStartStep&) const = default;
};

// [logs]: per-service log files (docs/logs.md). Files rotate by rename at max_size; `keep`
// rotated files are kept (S.log.1 .. S.log.KEEP).
struct LogsSpec {
  std::string dir;                          // absolute, or empty: the default place
  std::uint64_t max_size = 10 * 1024 * 1024;  // bytes, >= kMinLogSize
  int keep = 5;                             // 1..1000

  static constexpr std::uint64_t kMinLogSize = 1024;
  bool operator==(const LogsSpec&) const = default;
};

// [metrics]: the supervisor serves GET /metrics over HTTP on `listen` (docs/metrics.md). The
// table without `listen` means kDefaultListen (loopback); any other address is written out.
struct MetricsSpec {
  static constexpr const char* kDefaultListen = "127.0.0.1:9464";
  std::optional<ListenAddress> listen;  // unset: no HTTP endpoint
  bool operator==(const MetricsSpec&) const = default;
};

// [export.kubernetes]: settings used only by `deployctl export` (docs/export.md).
struct ExportSpec {
  std::string kubernetes_image;  // image = "...", or empty

  bool operator==(const ExportSpec&) const = default;
};

struct Spec {
  std::string name;
  std::string path;  // absolute path of the file it was loaded from
  std::vector<PreStartStep> pre_start;
  std::vector<ServiceSpec> services;  // in file order
  LogsSpec logs;
  MetricsSpec metrics;
  ExportSpec export_settings;

  const ServiceSpec* find_service(std::string_view service_name) const;
};

}  // namespace deployctl
