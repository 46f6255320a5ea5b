// The Prometheus text exposition format (version 0.0.4) of a deployment's metrics: a plain
// snapshot the daemon collects on request, and a pure formatter. Every metric is listed with
// its type, labels and meaning in docs/metrics.md; why we write the format ourselves instead
// of using prometheus-cpp is in docs/design-notes.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace deployctl {

// Buckets are cumulative in the output; here `counts[i]` counts observations <= bounds[i]
// that are above bounds[i-1] (the +Inf bucket is `count`).
struct HistogramSnapshot {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;  // same size as bounds
  double sum = 0;
  std::uint64_t count = 0;

  explicit HistogramSnapshot(std::vector<double> bucket_bounds = {})
      : bounds(std::move(bucket_bounds)), counts(bounds.size(), 0) {}
  void observe(double value);
};

struct ServiceMetrics {
  std::string name;
  int desired = 0;
  std::map<std::string, std::uint64_t> restarts;  // by reason; every known reason present
  std::uint64_t oom_kills = 0;
  std::map<std::string, std::uint64_t> probes;  // by result: "pass" | "fail"
  HistogramSnapshot probe_seconds;
  std::map<std::string, std::uint64_t> rollouts;  // by result: "done" | "failed"
  HistogramSnapshot rollout_seconds;
  std::optional<double> certificate_expiry;  // [tls]: Unix time the served certificate expires
  std::optional<std::map<std::string, std::uint64_t>> acme_renewals;  // acme: by "ok" | "error"
};

struct ReplicaMetrics {
  std::string service;
  int index = 0;
  std::string state;  // state_name()
  bool up = false;    // a process runs
  bool ready = false;
  std::optional<double> start_time_seconds;  // unix time of the current process's start
  int restarts = 0;
  std::optional<std::uint64_t> memory_bytes;
  std::optional<std::uint64_t> memory_limit_bytes;  // memory.max
  std::optional<double> cpu_seconds;                // user + system of the process
};

struct SocketMetrics {
  std::string service;
  std::string address;      // as written in the spec
  std::uint32_t queue = 0;  // connections waiting in the accept queue
  std::uint32_t limit = 0;  // the accept queue's capacity (the listen backlog)
};

struct PreStartMetrics {  // one [[pre_start]] step, over the supervisor's life
  std::string step;
  std::map<std::string, std::uint64_t> results;  // by result: ok, failed, timeout, cancelled
  HistogramSnapshot seconds;                     // how long its runs took
};

struct ProcessMetrics {  // the supervisor's own, as the client libraries name them
  double cpu_seconds = 0;
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
  double start_time_seconds = 0;
};

struct MetricsSnapshot {
  std::string deployment;
  std::string version;
  std::vector<std::string> states;  // every replica state name, for zero-valued series
  std::vector<ServiceMetrics> services;
  std::vector<ReplicaMetrics> replicas;
  std::vector<SocketMetrics> sockets;
  std::vector<PreStartMetrics> pre_start;
  ProcessMetrics process;
};

// The default buckets (seconds) of the latency and duration histograms.
std::vector<double> probe_buckets();
std::vector<double> rollout_buckets();
std::vector<double> pre_start_buckets();
// The results of a pre-start step, as the `result` label spells them.
inline constexpr const char* kPreStartResults[] = {"ok", "failed", "timeout", "cancelled"};

// Pure: the whole exposition, families in a fixed order, each with # HELP and # TYPE.
std::string format_metrics(const MetricsSnapshot& snapshot);

// The Content-Type of the output.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace deployctl
