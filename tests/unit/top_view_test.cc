// `deployctl top`'s screen: what goes on which line, truncation, bars, sorting, selection.
#include "top_view.h"

#include <doctest/doctest.h>

using namespace deployctl;

namespace {

json::Value replica(const std::string& id, const std::string& state, double memory,
                    long long restarts) {
  json::Value r;
  r["id"] = id;
  r["pid"] = 100;
  r["state"] = state;
  r["health"] = "healthy";
  r["uptime_ms"] = 62000;
  r["restarts"] = restarts;
  r["rss_bytes"] = memory;
  r["memory"] = json::Value::object();
  r["requests"] = nullptr;
  r["last_exit"] = nullptr;
  return r;
}

json::Value status_of(std::vector<json::Value> replicas, int desired) {
  json::Value service;
  service["name"] = "web";
  service["desired"] = desired;
  service["ready"] = static_cast<int>(replicas.size());
  service["rollout"] = nullptr;
  json::Array list(replicas.begin(), replicas.end());
  service["replicas"] = list;
  json::Value status;
  status["name"] = "demo";
  status["pid"] = 42;
  status["state"] = "running";
  status["uptime_ms"] = 5000;
  status["services"] = json::Array{service};
  return status;
}

json::Value two_replicas() {
  return status_of({replica("web.0", "ready", 10e6, 0), replica("web.1", "ready", 30e6, 2)}, 2);
}

std::vector<std::string> texts(const std::vector<TopLine>& lines) {
  std::vector<std::string> out;
  for (const auto& line : lines) out.push_back(line.text);
  return out;
}

int find_line(const std::vector<TopLine>& lines, const std::string& prefix) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].text.rfind(prefix, 0) == 0) return static_cast<int>(i);
  }
  return -1;
}

DeploymentEvent event(int n) {
  return {.seq = static_cast<std::uint64_t>(n),
          .time_ms = 1700000000000 + n * 1000,
          .kind = "state",
          .replica = "web.0",
          .message = "event " + std::to_string(n)};
}

}  // namespace

TEST_SUITE("top") {
  TEST_CASE("80x24: title, service, header, one row per replica, events; every line fits") {
    TopData data{.status = two_replicas()};
    for (int i = 1; i <= 8; ++i) data.events.push_back(event(i));
    const auto lines = render_top(data, {});
    CHECK(lines.size() <= 24);
    for (const auto& line : lines) CHECK(line.text.size() <= 80);
    CHECK(lines[0].text.rfind("demo: running  pid 42  up 5s", 0) == 0);
    CHECK(lines[0].text.find("sort:name") != std::string::npos);
    CHECK(lines[1].text == "web  2/2 ready");
    CHECK(lines[2].text.rfind("  REPLICA", 0) == 0);
    CHECK(lines[3].text.rfind("> web.0     ready      healthy   1m2s     0 -", 0) == 0);
    CHECK(lines[3].highlight);
    CHECK(lines[4].text.rfind("  web.1", 0) == 0);
    CHECK_FALSE(lines[4].highlight);
    CHECK(lines[5].text == "-- events --");
    CHECK(lines.size() == 6 + kTopEvents);  // the last five events, oldest first
    CHECK(lines[6].text.find("state web.0: event 4") != std::string::npos);
    CHECK(lines.back().text.find("event 8") != std::string::npos);
  }

  TEST_CASE("memory: the bytes and a bar against the limit") {
    auto r = replica("web.0", "ready", 0, 0);
    r["memory"]["bytes"] = 32.0 * 1024 * 1024;
    r["memory"]["max"] = 64.0 * 1024 * 1024;
    TopData data{.status = status_of({r}, 1)};
    const auto lines = render_top(data, {.width = 80});
    const std::string& row = lines[find_line(lines, "> web.0")].text;
    CHECK(row.find(" 32M  [##  ] ") != std::string::npos);
    CHECK(row.size() == 80);
    // Over the limit the bar stays full.
    r["memory"]["bytes"] = 80.0 * 1024 * 1024;
    data.status = status_of({r}, 1);
    const auto full = render_top(data, {.width = 80});
    CHECK(full[find_line(full, "> web.0")].text.find(" 80M  [####] ") != std::string::npos);
    // A wider terminal gets a wider bar.
    const auto wide = render_top(data, {.width = 100});
    CHECK(wide[find_line(wide, "> web.0")].text.find(" 80M  [#################] ") !=
          std::string::npos);
  }

  TEST_CASE("narrow and short terminals: lines are cut, rows scroll to keep the selection") {
    std::vector<json::Value> many;
    for (int i = 0; i < 30; ++i)
      many.push_back(replica("web." + std::to_string(i), "ready", 1e6, 0));
    TopData data{.status = status_of(many, 30)};
    for (int i = 1; i <= 8; ++i) data.events.push_back(event(i));
    TopScreen screen{.width = 40, .height = 12, .selected = "web.20"};
    const auto lines = render_top(data, screen);
    CHECK(lines.size() == 12);
    for (const auto& line : lines) CHECK(line.text.size() <= 40);
    CHECK(find_line(lines, "> web.20") >= 0);
    CHECK(find_line(lines, "  ... ") >= 0);
    CHECK(find_line(lines, "  web.0 ") < 0);  // scrolled past
    // Too short for events: the table keeps its rows.
    screen.height = 6;
    const auto tiny = render_top(data, screen);
    CHECK(tiny.size() == 6);
    CHECK(find_line(tiny, "-- events --") < 0);
    CHECK(find_line(tiny, "> web.20") >= 0);
  }

  TEST_CASE("any size down to 1x1 fits, table and log view, with or without replicas") {
    TopData data{.status = two_replicas(), .log_lines = {"a line\n"}};
    for (int i = 1; i <= 8; ++i) data.events.push_back(event(i));
    TopData empty{.status = status_of({}, 0)};
    for (int width : {1, 2, 10, 79, 200}) {
      for (int height : {1, 2, 3, 5, 24}) {
        for (bool log : {false, true}) {
          const TopScreen screen{.width = width, .height = height, .log = log};
          for (TopData* input : {&data, &empty}) {
            const auto lines = render_top(*input, screen);
            CHECK(static_cast<int>(lines.size()) <= height);
            for (const auto& line : lines) CHECK(static_cast<int>(line.text.size()) <= width);
          }
        }
      }
    }
  }

  TEST_CASE("sort cycles name, cpu, memory, restarts; ties keep file order") {
    const json::Value status = two_replicas();
    const std::map<std::string, double> cpu{{"web.0", 50}, {"web.1", 5}};
    CHECK(replica_order(status, TopSort::name, cpu) == std::vector<std::string>{"web.0", "web.1"});
    CHECK(replica_order(status, TopSort::cpu, cpu) == std::vector<std::string>{"web.0", "web.1"});
    CHECK(replica_order(status, TopSort::memory, cpu) ==
          std::vector<std::string>{"web.1", "web.0"});
    CHECK(replica_order(status, TopSort::restarts, cpu) ==
          std::vector<std::string>{"web.1", "web.0"});
    CHECK(next_sort(TopSort::name) == TopSort::cpu);
    CHECK(next_sort(TopSort::restarts) == TopSort::name);
    TopData data{.status = status, .cpu_percent = cpu};
    const auto lines = render_top(data, {.sort = TopSort::memory});
    CHECK(lines[3].text.rfind("> web.1", 0) == 0);  // no selection: the first row
    CHECK(lines[3].text.find(" 50.0 ") == std::string::npos);
    CHECK(lines[4].text.find(" 50.0 ") != std::string::npos);
    CHECK(lines[0].text.find("sort:memory") != std::string::npos);
  }

  TEST_CASE("selection moves by rows, clamped; an unknown one starts at the first row") {
    const std::vector<std::string> order{"a", "b", "c"};
    CHECK(move_selection(order, "a", 1) == "b");
    CHECK(move_selection(order, "c", 1) == "c");
    CHECK(move_selection(order, "a", -1) == "a");
    CHECK(move_selection(order, "gone", 1) == "a");
    CHECK(move_selection({}, "a", 1) == "");
  }

  TEST_CASE("log view: the selected replica's last lines, cut to the screen") {
    TopData data{.status = two_replicas()};
    for (int i = 0; i < 40; ++i) {
      data.log_lines.push_back("2026-11-30T12:00:0" + std::to_string(i % 10) +
                               ".000Z web.1 out | line " + std::to_string(i) + "\n");
    }
    const auto lines = render_top(data, {.selected = "web.1", .log = true});
    CHECK(lines.size() == 24);
    CHECK(lines[0].text == "web.1 log (l or Esc: back, q: quit)");
    CHECK(lines[1].text == "12:00:07 out | line 17");
    CHECK(lines.back().text == "12:00:09 out | line 39");
  }

  TEST_CASE("plain text: everything, no marker, no key help, no control bytes") {
    auto r = replica("web.0", "crash_loop", 1e6, 7);
    r["last_exit"]["code"] = nullptr;
    r["last_exit"]["signal"] = 9;
    r["last_exit"]["reason"] = "oom";
    r["requests"] = 1234;
    TopData data{.status = status_of({r}, 1)};
    data.events.push_back({.time_ms = 0, .kind = "log", .message = "bad \x1b[2J bytes\ttab"});
    const auto lines = render_top(data, {.width = 0, .height = 0, .interactive = false});
    CHECK(texts(lines)[0] == "demo: running  pid 42  up 5s");
    const std::string& row = lines[find_line(lines, "  web.0")].text;
    CHECK(row.find("crash_loop") != std::string::npos);
    CHECK(row.find("SIGKILL oom") != std::string::npos);
    CHECK(row.find("1234") != std::string::npos);
    CHECK(find_line(lines, "> ") < 0);
    CHECK(lines.back().text == "00:00:00 log: bad ?[2J bytes tab");
  }

  TEST_CASE("rollout progress and CPU percent") {
    json::Value status = two_replicas();
    status["services"][0]["rollout"] = "running";
    status["services"][0]["ready"] = 1;
    const auto lines = render_top({.status = status}, {});
    CHECK(lines[1].text == "web  1/2 ready  rollout running (2 replicas for 2)");
    CHECK(cpu_percent(1.0, 1.5, 1.0) == doctest::Approx(50));
    CHECK(cpu_percent(1.0, 0.5, 1.0) == 0);
    CHECK(cpu_percent(1.0, 2.0, 0) == 0);
  }
}
