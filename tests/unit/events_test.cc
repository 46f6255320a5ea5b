// The event stream: its pure parts (the bounded history, the wire form, the text line) and
// the management socket's streams that carry it.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>

#include "commands.h"
#include "events.h"
#include "management.h"

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

// The management socket's streams (`events -f`), with a real unix socket and a real client.
TEST_SUITE("management streams") {
  TEST_CASE("a client that does not read is dropped once 256 KiB are unwritten") {
    boost::asio::io_context io;
    const std::string path = "/tmp/dctl-stream-" + std::to_string(getpid()) + ".sock";
    ManagementServer server(io, path, geteuid(), [](const json::Value&, auto reply) {
      reply(management_error("not a stream", kExitUsage));
    });
    int sent = 0;
    std::shared_ptr<ManagementStream> kept;
    server.set_stream_handler([&](const json::Value& request, auto stream) {
      if (!json::as_bool(json::get(request, "follow"))) return false;
      json::Value line;
      line["event"] = std::string(1000, 'x');
      while (sent < 10000 && stream->send(line)) ++sent;
      kept = stream;
      return true;
    });
    std::string error;
    REQUIRE(server.listen(&error));
    const int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    REQUIRE(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    const std::string request = "{\"command\": \"events\", \"follow\": true}\n";
    REQUIRE(write(client, request.data(), request.size()) == ssize_t(request.size()));
    for (int i = 0; i < 200 && !kept; ++i) io.run_for(std::chrono::milliseconds(10));
    REQUIRE(kept);
    CHECK(sent > 200);  // about 256 KiB of 1 KB lines were queued ...
    CHECK(sent < 300);  // ... and not more: the client was dropped
    CHECK_FALSE(kept->open());
    CHECK_FALSE(kept->send(json::Value(1)));
    close(client);
    server.close();
  }

  TEST_CASE("a stream ends when its client hangs up") {
    boost::asio::io_context io;
    const std::string path = "/tmp/dctl-hangup-" + std::to_string(getpid()) + ".sock";
    ManagementServer server(io, path, geteuid(), [](const json::Value&, auto) {});
    std::shared_ptr<ManagementStream> kept;
    server.set_stream_handler([&](const json::Value&, auto stream) {
      json::Value ok;
      ok["ok"] = true;
      CHECK(stream->send(ok));
      kept = stream;
      return true;
    });
    std::string error;
    REQUIRE(server.listen(&error));
    const int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    REQUIRE(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(write(client, "{}\n", 3) == 3);
    for (int i = 0; i < 200 && !kept; ++i) io.run_for(std::chrono::milliseconds(10));
    REQUIRE(kept);
    char buffer[64];
    CHECK(read(client, buffer, sizeof buffer) == 12);  // {"ok":true}\n
    CHECK(kept->open());
    close(client);
    for (int i = 0; i < 200 && kept->open(); ++i) io.run_for(std::chrono::milliseconds(10));
    CHECK_FALSE(kept->open());
    server.close();
  }
}
