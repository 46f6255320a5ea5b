// The metrics (docs/metrics.md): a snapshot of the core's state and counters joined with the
// daemon's runtime facts, rendered by format_metrics. Collected only when a scrape or
// `deployctl metrics` asks; nothing here runs on the loop otherwise.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>

#include "metrics_http.h"
#include "pre_start.h"
#include "proc_stats.h"
#include "process.h"
#include "supervisor_state.h"
#include "version.h"

namespace deployctl {

bool Supervisor::start_metrics(std::string* error) {
  if (!spec_.metrics.listen) return true;
  metrics_http_ = std::make_unique<MetricsHttpServer>(io_, [this] { return metrics_text(); });
  if (!metrics_http_->listen(*spec_.metrics.listen, error)) return false;
  spdlog::info("serving metrics on http://{}/metrics", spec_.metrics.listen->text);
  return true;
}

void Supervisor::timed_probe(const ReplicaPtr& replica, ProbeDone done) {
  const auto started = std::chrono::steady_clock::now();
  start_probe(
      io_, children_, probe_target(*replica), replica->spec->health.timeout,
      [this, replica, started, done = std::move(done)](ProbeResult result) {
        ProbeStats& stats = probe_stats_[replica->service];
        ++stats.results[result.ok ? "pass" : "fail"];
        stats.seconds.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        if (!result.ok && state_of(*replica) == ReplicaState::ready) {
          publish_event({.time_ms = unix_time_ms(),
                         .kind = "probe",
                         .service = replica->service,
                         .replica = replica->id,
                         .message = "health probe failed: " + result.detail});
        }
        done(std::move(result));
      },
      &replica->probe_connection);
}

void Supervisor::record_pre_start(const std::vector<PreStartOutcome>& steps) {
  for (const auto& step : steps) {
    PreStartStats& stats = pre_start_stats_[step.step];
    ++stats.results[step.result];
    stats.seconds.observe(step.seconds);
    publish_event({.time_ms = unix_time_ms(),
                   .kind = "pre_start",
                   .message = "step " + step.step + ": " + step.result + " in " +
                              std::to_string(static_cast<long long>(step.seconds * 1000)) + "ms"});
  }
}

std::string Supervisor::metrics_text() const { return format_metrics(metrics_snapshot()); }

namespace {

ReplicaMetrics replica_metrics(const ReplicaRecord& record, const std::string& service) {
  ReplicaMetrics r;
  r.service = service;
  r.index = record.index;
  r.state = state_name(record.machine.state);
  r.ready = record.machine.state == ReplicaState::ready;
  r.restarts = record.machine.restarts;
  return r;
}

}  // namespace

MetricsSnapshot Supervisor::metrics_snapshot() const {
  MetricsSnapshot s;
  s.deployment = spec_.name;
  s.version = deployctl_version();
  for (auto state : {ReplicaState::stopped, ReplicaState::starting, ReplicaState::ready,
                     ReplicaState::unhealthy, ReplicaState::draining, ReplicaState::stopping,
                     ReplicaState::backoff, ReplicaState::crash_loop, ReplicaState::failed,
                     ReplicaState::quiescing}) {
    s.states.push_back(state_name(state));
  }
  const auto steady_now = time_.now();
  const auto wall_now = std::chrono::system_clock::now();
  for (const auto& [name, service] : core_.state().services) {
    ServiceMetrics m;
    m.name = name;
    m.desired = service.desired;
    for (const char* reason : kRestartReasons) m.restarts[reason] = 0;
    m.rollout_seconds = HistogramSnapshot(rollout_buckets());
    m.probe_seconds = HistogramSnapshot(probe_buckets());
    if (auto it = counters_.services().find(name); it != counters_.services().end()) {
      for (const auto& [reason, count] : it->second.restarts) m.restarts[reason] = count;
      m.oom_kills = it->second.oom_kills;
      m.rollouts = it->second.rollouts;
      for (double seconds : it->second.rollout_seconds) m.rollout_seconds.observe(seconds);
    }
    if (auto it = probe_stats_.find(name); it != probe_stats_.end()) {
      m.probes = it->second.results;
      m.probe_seconds = it->second.seconds;
    }
    certificate_metrics(name, m);  // supervisor_acme.cc
    s.services.push_back(std::move(m));
    for (const auto& [index, record] : service.replicas) {
      ReplicaMetrics r = replica_metrics(record, name);
      auto it = replicas_.find(record.serial);
      const Replica* runtime = it != replicas_.end() ? it->second.get() : nullptr;
      if (runtime) r.memory_limit_bytes = runtime->spec->memory.max;
      if (runtime && runtime->pid > 0) {
        r.up = true;
        const auto age = std::chrono::duration_cast<std::chrono::system_clock::duration>(
            steady_now - runtime->spawned_at);
        r.start_time_seconds =
            std::chrono::duration<double>((wall_now - age).time_since_epoch()).count();
        if (runtime->memory.policy) {
          r.memory_bytes = memory_now(*runtime);
        } else if (auto rss = resident_bytes(runtime->pid)) {
          r.memory_bytes = *rss;
        }
        r.cpu_seconds = process_cpu_seconds(runtime->pid);
      }
      s.replicas.push_back(std::move(r));
    }
  }
  for (const auto& [name, service] : services_) {
    for (const auto& socket : service->sockets) {
      if (auto queue = accept_queue(socket.fd)) {
        s.sockets.push_back({name, socket.address.text, queue->length, queue->limit});
      }
    }
  }
  auto pre_start = pre_start_stats_;
  for (const auto& step : spec_.pre_start) pre_start[step.name];  // zeros until it runs
  for (const auto& [step, stats] : pre_start) {
    s.pre_start.push_back({step, stats.results, stats.seconds});
  }
  s.process = own_process_metrics();
  return s;
}

}  // namespace deployctl
