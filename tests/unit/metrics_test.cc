// The metrics: the core's counters in simulated time, the text formatter, the HTTP request
// check, the [metrics] table, and TCP_INFO of a real listening socket.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <sstream>

#include "deployment_sim.h"
#include "load.h"
#include "metrics_http.h"
#include "metrics_text.h"
#include "proc_stats.h"

using namespace deployctl;
using namespace deployctl::sim;
using namespace std::chrono_literals;

namespace {

SimDaemon running_web(int replicas) {
  auto web = service_spec("web", 2);
  web.replicas = replicas;
  SimDaemon sim(spec_of({web}));
  sim.start();
  return sim;
}

std::uint64_t restarts(const SimDaemon& sim, const std::string& reason) {
  const auto& services = sim.counters.services();
  auto it = services.find("web");
  if (it == services.end()) return 0;
  auto found = it->second.restarts.find(reason);
  return found == it->second.restarts.end() ? 0 : found->second;
}

MetricsSnapshot sample_snapshot() {
  MetricsSnapshot s;
  s.deployment = "demo";
  s.version = "1.2.3";
  s.states = {"starting", "ready"};
  ServiceMetrics web;
  web.name = "web";
  web.desired = 2;
  web.restarts = {{"exit", 0}, {"signal", 1}};
  web.probe_seconds = HistogramSnapshot({0.01, 0.1});
  web.probe_seconds.observe(0.005);
  web.probe_seconds.observe(0.05);
  web.probe_seconds.observe(3);
  web.probes = {{"pass", 2}, {"fail", 1}};
  web.rollout_seconds = HistogramSnapshot(rollout_buckets());
  s.services.push_back(web);
  ReplicaMetrics r0{.service = "web", .index = 0, .state = "ready", .up = true, .ready = true};
  r0.memory_bytes = 1048576;
  r0.cpu_seconds = 0.25;
  ReplicaMetrics r1{.service = "web", .index = 1, .state = "starting", .up = true};
  s.replicas = {r0, r1};
  s.sockets.push_back({"web", "127.0.0.1:8000", 3, 4096});
  s.process.cpu_seconds = 1.5;
  return s;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string got; std::getline(in, got);) {
    if (got == line) return true;
  }
  return false;
}

}  // namespace

TEST_SUITE("metrics") {
  TEST_CASE("counters: restarts by reason come from the core's transitions") {
    auto sim = running_web(2);
    const auto serials = sim.serials("web");
    sim.exit(serials[0], {.signal = 9});
    CHECK(restarts(sim, "signal") == 1);
    sim.exit(serials[1], {.code = 3});
    CHECK(restarts(sim, "exit") == 1);
    CHECK(restarts(sim, "signal") == 1);
    sim.feed({.kind = Event::Kind::exited,
              .replica = serials[0],
              .status = {.signal = 9},
              .out_of_memory = true});
    CHECK(restarts(sim, "oom") == 1);
    CHECK(sim.counters.services().at("web").oom_kills == 1);
  }

  TEST_CASE("counters: a scale down drains without counting a restart") {
    auto sim = running_web(3);
    sim.scale("web", 1);
    CHECK(sim.states("web") == std::vector<std::string>{"ready"});
    for (const char* reason : kRestartReasons) CHECK(restarts(sim, reason) == 0);
  }

  TEST_CASE("counters: rollouts by result with their duration") {
    auto sim = running_web(2);
    sim.behaviour["web"].becomes_ready = false;
    sim.restart();
    sim.advance(2s);  // the new replica misses its start period: the rollout fails
    const auto& web = sim.counters.services().at("web");
    CHECK(web.rollouts.at("failed") == 1);
    REQUIRE(web.rollout_seconds.size() == 1);
    CHECK(web.rollout_seconds[0] == doctest::Approx(2.0).epsilon(0.05));
  }

  TEST_CASE("counters: a rollout that starts and ends within one event is counted") {
    auto sim = running_web(2);
    sim.scale("web", 0);
    REQUIRE(sim.service("web").replicas.empty());
    sim.restart({"web"});  // nothing to replace: the rollout is done as it begins
    REQUIRE(sim.service("web").rollout->status == RolloutState::Status::done);
    const auto& web = sim.counters.services().at("web");
    CHECK(web.rollouts.at("done") == 1);
    REQUIRE(web.rollout_seconds.size() == 1);
    CHECK(web.rollout_seconds[0] == 0.0);
    CHECK(sim.count(Action::Kind::rollout_started) == 1);
    CHECK(sim.count(Action::Kind::rollout_ended) == 1);
  }

  TEST_CASE("counters: a rollout restarted by a new certificate counts once") {
    auto sim = running_web(2);
    sim.behaviour["web"].becomes_ready = false;
    sim.restart();
    sim.feed({.kind = Event::Kind::cert_changed, .services = {"web"}});
    sim.behaviour["web"].becomes_ready = true;
    sim.advance(3s);
    const auto& web = sim.counters.services().at("web");
    std::uint64_t total = 0;
    for (const auto& [result, count] : web.rollouts) total += count;
    CHECK(total == 1);
  }

  TEST_CASE("counters: a memory recycle counts as a restart for memory") {
    auto sim = running_web(2);
    sim.feed(
        {.kind = Event::Kind::memory_high, .replica = sim.serials("web")[1], .bytes = 1 << 30});
    CHECK(restarts(sim, "memory-recycle") == 1);
  }

  TEST_CASE("format: pre-start steps by result (every result, zeros too) and their duration") {
    MetricsSnapshot snapshot = sample_snapshot();
    PreStartMetrics migrate{.step = "migrate", .seconds = HistogramSnapshot(pre_start_buckets())};
    migrate.results = {{"ok", 2}, {"timeout", 1}};
    for (double seconds : {0.3, 0.4, 700.0}) migrate.seconds.observe(seconds);
    snapshot.pre_start.push_back(migrate);
    const std::string text = format_metrics(snapshot);
    CHECK(has_line(text, "# TYPE deployctl_prestart_steps_total counter"));
    CHECK(has_line(text, "deployctl_prestart_steps_total{step=\"migrate\",result=\"ok\"} 2"));
    CHECK(has_line(text, "deployctl_prestart_steps_total{step=\"migrate\",result=\"failed\"} 0"));
    CHECK(has_line(text, "deployctl_prestart_steps_total{step=\"migrate\",result=\"timeout\"} 1"));
    CHECK(has_line(text, "deployctl_prestart_steps_total{step=\"migrate\",result=\"cancelled\"} 0"));
    CHECK(has_line(text, "# TYPE deployctl_prestart_step_duration_seconds histogram"));
    CHECK(has_line(text,
                   "deployctl_prestart_step_duration_seconds_bucket{step=\"migrate\",le=\"0.5\"} 2"));
    CHECK(has_line(text,
                   "deployctl_prestart_step_duration_seconds_bucket{step=\"migrate\",le=\"600\"} 2"));
    CHECK(has_line(text, "deployctl_prestart_step_duration_seconds_count{step=\"migrate\"} 3"));
  }

  TEST_CASE("format: families with HELP and TYPE, labels, cumulative buckets") {
    const std::string text = format_metrics(sample_snapshot());
    CHECK(has_line(text, "# TYPE deployctl_build_info gauge"));
    CHECK(has_line(text, "deployctl_build_info{version=\"1.2.3\",deployment=\"demo\"} 1"));
    CHECK(has_line(text, "deployctl_replicas{service=\"web\",state=\"ready\"} 1"));
    CHECK(has_line(text, "deployctl_replicas{service=\"web\",state=\"starting\"} 1"));
    CHECK(has_line(text, "deployctl_replicas_desired{service=\"web\"} 2"));
    CHECK(has_line(text, "deployctl_restarts_total{service=\"web\",reason=\"signal\"} 1"));
    CHECK(has_line(text, "deployctl_health_probes_total{service=\"web\",result=\"fail\"} 1"));
    CHECK(has_line(
        text, "deployctl_health_probe_duration_seconds_bucket{service=\"web\",le=\"0.01\"} 1"));
    CHECK(has_line(text,
                   "deployctl_health_probe_duration_seconds_bucket{service=\"web\",le=\"0.1\"} 2"));
    CHECK(has_line(
        text, "deployctl_health_probe_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 3"));
    CHECK(has_line(text, "deployctl_health_probe_duration_seconds_count{service=\"web\"} 3"));
    CHECK(has_line(text, "deployctl_health_probe_duration_seconds_sum{service=\"web\"} 3.055"));
    CHECK(has_line(text, "deployctl_replica_memory_bytes{service=\"web\",index=\"0\"} 1048576"));
    CHECK(has_line(text, "deployctl_replica_cpu_seconds_total{service=\"web\",index=\"0\"} 0.25"));
    CHECK(has_line(text, "deployctl_replica_ready{service=\"web\",index=\"1\"} 0"));
    CHECK(has_line(text,
                   "deployctl_listen_queue_length{service=\"web\",address=\"127.0.0.1:8000\"} 3"));
    CHECK(has_line(
        text, "deployctl_listen_queue_limit{service=\"web\",address=\"127.0.0.1:8000\"} 4096"));
    CHECK(has_line(text, "process_cpu_seconds_total 1.5"));
    // Unknown values leave the series out rather than reporting 0.
    CHECK(text.find("deployctl_replica_memory_bytes{service=\"web\",index=\"1\"}") ==
          std::string::npos);
    CHECK(text.find("pid") == std::string::npos);
  }

  TEST_CASE("format: every sample belongs to the family declared just before it") {
    const std::string text = format_metrics(sample_snapshot());
    std::istringstream in(text);
    std::string family;
    std::set<std::string> declared;
    const std::regex sample_line(R"(^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf)$)");
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("# TYPE ")) {
        family = line.substr(7, line.find(' ', 7) - 7);
        CHECK(declared.insert(family).second);
        continue;
      }
      if (line.starts_with("# HELP ")) continue;
      std::smatch match;
      REQUIRE_MESSAGE(std::regex_match(line, match, sample_line), line);
      CHECK_MESSAGE(match[1].str().starts_with(family), line);
    }
    CHECK(declared.size() >= 20);
  }

  TEST_CASE("format: certificate expiry for [tls] services, ACME attempts for acme ones") {
    MetricsSnapshot s = sample_snapshot();
    CHECK(format_metrics(s).find("deployctl_certificate_expiry_timestamp_seconds{") ==
          std::string::npos);  // no [tls]: no series
    s.services[0].certificate_expiry = 1900000000;
    s.services[0].acme_renewals = std::map<std::string, std::uint64_t>{{"error", 2}};
    const std::string text = format_metrics(s);
    CHECK(has_line(text, "# TYPE deployctl_certificate_expiry_timestamp_seconds gauge"));
    CHECK(has_line(text,
                   "deployctl_certificate_expiry_timestamp_seconds{service=\"web\"} 1900000000"));
    CHECK(has_line(text, "# TYPE deployctl_acme_renewals_total counter"));
    CHECK(has_line(text, "deployctl_acme_renewals_total{service=\"web\",result=\"ok\"} 0"));
    CHECK(has_line(text, "deployctl_acme_renewals_total{service=\"web\",result=\"error\"} 2"));
  }

  TEST_CASE("format: label values are escaped") {
    MetricsSnapshot s;
    s.deployment = "a\"b\\c\nd";
    CHECK(has_line(format_metrics(s),
                   "deployctl_build_info{version=\"\",deployment=\"a\\\"b\\\\c\\nd\"} 1"));
  }

  TEST_CASE("http: the status of a request head") {
    CHECK(metrics_request_status("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == 200);
    CHECK(metrics_request_status("GET /metrics?x=1 HTTP/1.0\r\n\r\n") == 200);
    CHECK(metrics_request_status("GET / HTTP/1.1\r\n\r\n") == 404);
    CHECK(metrics_request_status("POST /metrics HTTP/1.1\r\n\r\n") == 405);
    CHECK(metrics_request_status("GET /metrics\r\n\r\n") == 400);
    CHECK(metrics_request_status("hello\r\n\r\n") == 400);
    CHECK(metrics_request_status("GET /metrics HTTP/9\r\n\r\n") == 400);
    CHECK(metrics_request_status("get /metrics HTTP/1.1\r\n\r\n") == 400);
    CHECK(metrics_request_status("GET metrics HTTP/1.1\r\n\r\n") == 400);
    CHECK(metrics_request_status("") == 400);
  }

  TEST_CASE("spec: [metrics] listen is loopback by default, explicit otherwise, validated") {
    const std::string head = "name = \"m\"\n[services.web]\ncommand = [\"x\"]\n";
    auto loaded = parse_spec(head, "m.toml");
    REQUIRE(loaded.spec);
    CHECK_FALSE(loaded.spec->metrics.listen);
    loaded = parse_spec(head + "[metrics]\n", "m.toml");
    REQUIRE(loaded.spec);
    CHECK(loaded.spec->metrics.listen->text == "127.0.0.1:9464");
    loaded = parse_spec(head + "[metrics]\nlisten = \"0.0.0.0:9100\"\n", "m.toml");
    REQUIRE(loaded.spec);
    CHECK(loaded.spec->metrics.listen->host == "0.0.0.0");
    loaded = parse_spec(head + "[metrics]\nlisten = \"nowhere\"\n", "m.toml");
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].to_string().starts_with(
        "m.toml:5:10: metrics.listen: invalid listen address \"nowhere\""));
    loaded = parse_spec(head + "[metrics]\nport = 1\n", "m.toml");
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].to_string().find("metrics.port") != std::string::npos);
    loaded = parse_spec(
        "name = \"m\"\n[services.web]\ncommand = [\"x\"]\n"
        "listen = [\"127.0.0.1:9464\"]\n[metrics]\n",
        "m.toml");
    CHECK(loaded.spec);  // the default address is checked only when written
    loaded = parse_spec(
        "name = \"m\"\n[services.web]\ncommand = [\"x\"]\n"
        "listen = [\"127.0.0.1:9464\"]\n[metrics]\nlisten = \"localhost:9464\"\n",
        "m.toml");
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].to_string().find("already a listen address of service \"web\"") !=
          std::string::npos);
  }

  TEST_CASE("TCP_INFO of a real listener: queued connections and the backlog") {
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(listen(listener, 7) == 0);
    socklen_t size = sizeof address;
    REQUIRE(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size) == 0);
    auto empty = accept_queue(listener);
    REQUIRE(empty);
    CHECK(empty->length == 0);
    CHECK(empty->limit == 7);
    const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    CHECK(accept_queue(listener)->length == 1);  // loopback: established before connect returns
    CHECK_FALSE(accept_queue(client));           // not a listener
    close(client);
    close(listener);
  }

  TEST_CASE("own process metrics come from /proc") {
    const ProcessMetrics own = own_process_metrics();
    CHECK(own.resident_bytes > 0);
    CHECK(own.open_fds >= 3);
    CHECK(own.max_fds >= own.open_fds);
    CHECK(own.start_time_seconds > 1.6e9);
    CHECK(process_cpu_seconds(getpid()));
    CHECK_FALSE(process_cpu_seconds(-5));
  }
}
