// The event stream's pure parts: the bounded history, the wire form and the text line.
#include "events.h"

#include <doctest/doctest.h>

using namespace deployctl;

TEST_SUITE("events") {
  TEST_CASE("history: numbered from 1, keeps the last kCapacity") {
    EventHistory history;
    for (int i = 0; i < 1005; ++i) history.add({.kind = "log", .message = std::to_string(i)});
    CHECK(history.events().size() == EventHistory::kCapacity);
    CHECK(history.events().front().seq == 6);
    CHECK(history.events().front().message == "5");
    CHECK(history.events().back().seq == 1005);
  }

  TEST_CASE("wire form round-trips; other values are not events") {
    const DeploymentEvent event{.seq = 7,
                                .time_ms = 1700000000123,
                                .kind = "exit",
                                .service = "web",
                                .replica = "web.1",
                                .message = "signal 9 (SIGKILL), reason signal",
                                .lines = {"Traceback", "boom"}};
    CHECK(event_from_json(event_json(event)) == event);
    CHECK_FALSE(event_from_json(json::Value(3)));
    CHECK_FALSE(event_from_json(*json::parse(R"({"seq": 1})")));
  }

  TEST_CASE("text: UTC time with milliseconds, kind, who, message, stderr lines") {
    const DeploymentEvent exit{.time_ms = 1700000000123,
                               .kind = "exit",
                               .service = "web",
                               .replica = "web.1",
                               .message = "code 3, reason exit",
                               .lines = {"boom"}};
    CHECK(event_text(exit) ==
          "2023-11-14T22:13:20.123Z exit web.1: code 3, reason exit\n    web.1 | boom\n");
    const DeploymentEvent scale{
        .time_ms = 5, .kind = "scale", .service = "web", .message = "desired replicas 2 -> 3"};
    CHECK(event_text(scale) == "1970-01-01T00:00:00.005Z scale web: desired replicas 2 -> 3\n");
    const DeploymentEvent log{.time_ms = 0, .kind = "log", .message = "up"};
    CHECK(event_text(log) == "1970-01-01T00:00:00.000Z log: up\n");
  }
}
