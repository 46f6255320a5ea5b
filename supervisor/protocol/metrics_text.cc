#include "metrics_text.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace deployctl {
namespace {

using Labels = std::vector<std::pair<const char*, std::string>>;

// Label values escape backslash, double quote and newline.
void append_escaped(std::string& out, const std::string& value) {
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void append_number(std::string& out, double value) {
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[32];
  const double whole = std::floor(value);
  if (whole == value && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.9g", value);
  }
  out += buffer;
}

class Writer {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP deployctl_";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE deployctl_";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // A family whose name has no deployctl_ prefix (process_*).
  void bare_family(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + ' ' + help + "\n# TYPE " + name + ' ' + type + '\n';
  }
  void sample(const std::string& name, const Labels& labels, double value, bool prefixed = true) {
    if (prefixed) out_ += "deployctl_";
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i) out_ += ',';
        out_ += labels[i].first;
        out_ += "=\"";
        append_escaped(out_, labels[i].second);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    append_number(out_, value);
    out_ += '\n';
  }
  void histogram(const std::string& name, Labels labels, const HistogramSnapshot& h) {
    std::uint64_t cumulative = 0;
    labels.emplace_back("le", "");
    for (std::size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      labels.back().second.clear();
      append_number(labels.back().second, h.bounds[i]);
      sample(name + "_bucket", labels, static_cast<double>(cumulative));
    }
    labels.back().second = "+Inf";
    sample(name + "_bucket", labels, static_cast<double>(h.count));
    labels.pop_back();
    sample(name + "_sum", labels, h.sum);
    sample(name + "_count", labels, static_cast<double>(h.count));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

Labels service_label(const std::string& name) { return {{"service", name}}; }
Labels replica_labels(const ReplicaMetrics& r) {
  return {{"service", r.service}, {"index", std::to_string(r.index)}};
}

void write_services(Writer& w, const MetricsSnapshot& s) {
  w.family("replicas", "gauge", "Replicas by service and state.");
  for (const auto& service : s.services) {
    for (const auto& state : s.states) {
      int count = 0;
      for (const auto& r : s.replicas) count += r.service == service.name && r.state == state;
      w.sample("replicas", {{"service", service.name}, {"state", state}}, count);
    }
  }
  w.family("replicas_desired", "gauge", "Replicas the service should have (spec or scale).");
  for (const auto& service : s.services) {
    w.sample("replicas_desired", service_label(service.name), service.desired);
  }
  w.family("restarts_total", "counter", "Replica restarts by service and reason.");
  for (const auto& service : s.services) {
    for (const auto& [reason, count] : service.restarts) {
      w.sample("restarts_total", {{"service", service.name}, {"reason", reason}},
               static_cast<double>(count));
    }
  }
  w.family("oom_kills_total", "counter", "Replicas killed for exceeding memory.max.");
  for (const auto& service : s.services) {
    w.sample("oom_kills_total", service_label(service.name),
             static_cast<double>(service.oom_kills));
  }
  w.family("health_probes_total", "counter", "Health probes by service and result.");
  for (const auto& service : s.services) {
    for (const char* result : {"pass", "fail"}) {
      auto it = service.probes.find(result);
      w.sample("health_probes_total", {{"service", service.name}, {"result", result}},
               it == service.probes.end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  w.family("health_probe_duration_seconds", "histogram", "Latency of health probes.");
  for (const auto& service : s.services) {
    w.histogram("health_probe_duration_seconds", service_label(service.name),
                service.probe_seconds);
  }
  w.family("rollouts_total", "counter", "Finished rolling replacements by service and result.");
  for (const auto& service : s.services) {
    for (const char* result : {"done", "failed"}) {
      auto it = service.rollouts.find(result);
      w.sample("rollouts_total", {{"service", service.name}, {"result", result}},
               it == service.rollouts.end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  w.family("rollout_duration_seconds", "histogram", "Duration of finished rollouts.");
  for (const auto& service : s.services) {
    w.histogram("rollout_duration_seconds", service_label(service.name), service.rollout_seconds);
  }
}

void write_pre_start(Writer& w, const MetricsSnapshot& s) {
  w.family("prestart_steps_total", "counter", "Runs of [[pre_start]] steps by step and result.");
  for (const auto& step : s.pre_start) {
    for (const char* result : kPreStartResults) {
      auto it = step.results.find(result);
      w.sample("prestart_steps_total", {{"step", step.step}, {"result", result}},
               it == step.results.end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  w.family("prestart_step_duration_seconds", "histogram", "Duration of [[pre_start]] step runs.");
  for (const auto& step : s.pre_start) {
    w.histogram("prestart_step_duration_seconds", {{"step", step.step}}, step.seconds);
  }
}

// [tls] services only: certificate expiry (file and acme) and ACME attempts (acme).
void write_certificates(Writer& w, const MetricsSnapshot& s) {
  w.family("certificate_expiry_timestamp_seconds", "gauge",
           "Unix time the service's certificate expires ([tls] services).");
  for (const auto& service : s.services) {
    if (service.certificate_expiry) {
      w.sample("certificate_expiry_timestamp_seconds", service_label(service.name),
               *service.certificate_expiry);
    }
  }
  w.family("acme_renewals_total", "counter",
           "Finished ACME certificate requests (issue or renewal) by service and result.");
  for (const auto& service : s.services) {
    if (!service.acme_renewals) continue;
    for (const char* result : {"ok", "error"}) {
      auto it = service.acme_renewals->find(result);
      w.sample("acme_renewals_total", {{"service", service.name}, {"result", result}},
               it == service.acme_renewals->end() ? 0.0 : static_cast<double>(it->second));
    }
  }
}

template <typename Value>
void per_replica(Writer& w, const MetricsSnapshot& s, const char* name, const char* type,
                 const char* help, Value value) {
  w.family(name, type, help);
  for (const auto& r : s.replicas) {
    if (auto v = value(r)) w.sample(name, replica_labels(r), *v);
  }
}

void write_replicas(Writer& w, const MetricsSnapshot& s) {
  using Opt = std::optional<double>;
  per_replica(w, s, "replica_up", "gauge", "1 if the replica's process runs.",
              [](const ReplicaMetrics& r) { return Opt(r.up); });
  per_replica(w, s, "replica_ready", "gauge", "1 if the replica is ready.",
              [](const ReplicaMetrics& r) { return Opt(r.ready); });
  per_replica(w, s, "replica_start_time_seconds", "gauge",
              "Start time of the replica's process since the unix epoch.",
              [](const ReplicaMetrics& r) { return r.start_time_seconds; });
  per_replica(w, s, "replica_restarts_total", "counter", "Restarts of this replica slot.",
              [](const ReplicaMetrics& r) { return Opt(r.restarts); });
  per_replica(w, s, "replica_memory_bytes", "gauge",
              "Memory of the replica (cgroup memory.current, or its resident set).",
              [](const ReplicaMetrics& r) {
                return r.memory_bytes ? Opt(static_cast<double>(*r.memory_bytes)) : Opt();
              });
  per_replica(w, s, "replica_memory_limit_bytes", "gauge", "The replica's memory.max.",
              [](const ReplicaMetrics& r) {
                return r.memory_limit_bytes ? Opt(static_cast<double>(*r.memory_limit_bytes))
                                            : Opt();
              });
  per_replica(w, s, "replica_cpu_seconds_total", "counter",
              "User and system CPU time of the replica's process.",
              [](const ReplicaMetrics& r) { return r.cpu_seconds; });
}

void write_sockets(Writer& w, const MetricsSnapshot& s) {
  w.family("listen_queue_length", "gauge",
           "Connections waiting in a listen socket's accept queue.");
  for (const auto& socket : s.sockets) {
    w.sample("listen_queue_length", {{"service", socket.service}, {"address", socket.address}},
             socket.queue);
  }
  w.family("listen_queue_limit", "gauge", "Capacity of a listen socket's accept queue (backlog).");
  for (const auto& socket : s.sockets) {
    w.sample("listen_queue_limit", {{"service", socket.service}, {"address", socket.address}},
             socket.limit);
  }
}

void write_process(Writer& w, const ProcessMetrics& p) {
  auto one = [&w](const char* name, const char* type, const char* help, double value) {
    w.bare_family(name, type, help);
    w.sample(name, {}, value, false);
  };
  one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
      p.cpu_seconds);
  one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
      static_cast<double>(p.resident_bytes));
  one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
      static_cast<double>(p.virtual_bytes));
  one("process_open_fds", "gauge", "Number of open file descriptors.",
      static_cast<double>(p.open_fds));
  one("process_max_fds", "gauge", "Maximum number of open file descriptors.",
      static_cast<double>(p.max_fds));
  one("process_start_time_seconds", "gauge",
      "Start time of the process since unix epoch in seconds.", p.start_time_seconds);
}

}  // namespace

void HistogramSnapshot::observe(double value) {
  ++count;
  sum += value;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (value <= bounds[i]) {
      ++counts[i];
      return;
    }
  }
}

std::vector<double> probe_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> rollout_buckets() { return {1, 2, 5, 10, 30, 60, 120, 300, 600, 1800}; }

std::vector<double> pre_start_buckets() {
  return {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800};
}

std::string format_metrics(const MetricsSnapshot& s) {
  Writer w;
  w.family("build_info", "gauge", "Always 1; the version and the deployment's name as labels.");
  w.sample("build_info", {{"version", s.version}, {"deployment", s.deployment}}, 1);
  write_services(w, s);
  write_pre_start(w, s);
  write_replicas(w, s);
  write_sockets(w, s);
  write_certificates(w, s);
  write_process(w, s.process);
  return w.take();
}

}  // namespace deployctl
