// The http probe's kept connection, tested for real: a keep-alive HTTP server on 127.0.0.1 on
// the same event loop, counting the connections it accepts, in the ways servers end them.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io_loop.h"
#include "probes.h"

using namespace deployctl;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;
using boost::system::error_code;
using deployctl::testing::run_for;
using deployctl::testing::run_until;

namespace {

constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

// What the server does with each request of a connection (`nth`: 0 for its first request).
enum class Behaviour {
  keep,               // answers kOk, keeps the connection
  close_when_idle,    // answers kOk, closes the connection 20 ms later (an idle timeout)
  close_after_first,  // answers the first request; closes at the second without answering
  headers_then_hang,  // sends a head announcing 3 bytes of body, never the body
};

class KeepAliveServer {
 public:
  KeepAliveServer(boost::asio::io_context& io, Behaviour behaviour)
      : acceptor_(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        behaviour_(behaviour) {
    accept();
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted = 0;
  int requests = 0;
  std::vector<std::string> heads;  // every request head received

 private:
  struct Connection {
    explicit Connection(tcp::socket s) : socket(std::move(s)), idle(socket.get_executor()) {}
    tcp::socket socket;
    boost::asio::steady_timer idle;
    std::string input;
    int served = 0;
  };

  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec) return;
      ++accepted;
      read(std::make_shared<Connection>(std::move(socket)));
      accept();
    });
  }

  void read(const std::shared_ptr<Connection>& connection) {
    boost::asio::async_read_until(connection->socket,
                                  boost::asio::dynamic_buffer(connection->input), "\r\n\r\n",
                                  [this, connection](error_code ec, std::size_t n) {
                                    if (ec) return;
                                    heads.push_back(connection->input.substr(0, n));
                                    connection->input.erase(0, n);
                                    ++requests;
                                    answer(connection);
                                  });
  }

  void answer(const std::shared_ptr<Connection>& connection) {
    const int nth = connection->served++;
    if (behaviour_ == Behaviour::close_after_first && nth > 0) {
      error_code ignored;
      connection->socket.close(ignored);
      return;
    }
    const std::string_view reply =
        behaviour_ == Behaviour::headers_then_hang ? kOk.substr(0, kOk.size() - 3) : kOk;
    boost::asio::async_write(connection->socket, boost::asio::buffer(reply),
                             [this, connection](error_code ec, std::size_t) {
                               if (ec) return;
                               if (behaviour_ == Behaviour::close_when_idle) close_soon(connection);
                               read(connection);
                             });
  }

  void close_soon(const std::shared_ptr<Connection>& connection) {
    connection->idle.expires_after(20ms);
    connection->idle.async_wait([connection](error_code ec) {
      if (!ec) connection->socket.close(ec);
    });
  }

  tcp::acceptor acceptor_;
  Behaviour behaviour_;
};

ProbeTarget target_of(const KeepAliveServer& server) {
  ProbeTarget target{HealthKind::http};
  target.host = "127.0.0.1";
  target.port = server.port();
  target.path = "/healthz";
  return target;
}

struct Checks {
  int passed = 0;
  int failed = 0;
  std::vector<std::string> details;
};

// Runs `count` checks one after another over `kept`, each to completion.
Checks run_checks(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                  KeptProbeConnection& kept, int count, Duration timeout = 1000ms) {
  Checks checks;
  for (int i = 0; i < count; ++i) {
    int calls = 0;
    start_probe(
        io, children, target, timeout,
        [&](ProbeResult result) {
          ++calls;
          ++(result.ok ? checks.passed : checks.failed);
          checks.details.push_back(result.detail);
        },
        &kept);
    REQUIRE(run_until(
        io, [&] { return calls > 0; }, timeout + 500ms));
  }
  return checks;
}

}  // namespace

TEST_CASE("http probe: a replica's checks share one kept-alive connection") {
  boost::asio::io_context io;
  KeepAliveServer server(io, Behaviour::keep);
  ChildWatcher children(io);
  KeptProbeConnection kept;
  const Checks checks = run_checks(io, children, target_of(server), kept, 20);
  CHECK(checks.passed == 20);
  CHECK(checks.details.back() == "HTTP 200");
  CHECK(server.requests == 20);
  CHECK(server.accepted == 1);
  CHECK(server.heads.back() ==
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
            "\r\nUser-Agent: deployctl-probe\r\n\r\n");
}

TEST_CASE("http probe: a connection the server closed while idle is replaced, not a failure") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  KeepAliveServer server(io, Behaviour::close_after_first);
  KeptProbeConnection kept;
  SUBCASE("seen closed before sending") {
    KeepAliveServer idle_closer(io, Behaviour::close_when_idle);
    for (int i = 0; i < 3; ++i) {
      const Checks checks = run_checks(io, children, target_of(idle_closer), kept, 1);
      CHECK(checks.passed == 1);
      run_for(io, 100ms);  // the server closes the idle connection meanwhile
    }
    CHECK(idle_closer.accepted == 3);
    CHECK(idle_closer.requests == 3);  // no request was sent on a closed connection
  }
  SUBCASE("closed as the request arrives: reconnect and send again") {
    // close_after_first closes at the second request without a byte of answer: exactly the
    // race of a server's idle timeout expiring as the check is sent.
    const Checks checks = run_checks(io, children, target_of(server), kept, 5);
    CHECK(checks.passed == 5);
    CHECK(checks.failed == 0);
    CHECK(server.accepted == 5);
    CHECK(server.requests == 9);  // every check after the first sent twice
  }
}

TEST_CASE("http probe: a replica that hangs after the headers fails within the timeout") {
  boost::asio::io_context io;
  KeepAliveServer server(io, Behaviour::headers_then_hang);
  ChildWatcher children(io);
  KeptProbeConnection kept;
  const auto started = Clock::now();
  const Checks checks = run_checks(io, children, target_of(server), kept, 2, 200ms);
  const auto elapsed = Clock::now() - started;
  CHECK(checks.failed == 2);
  CHECK(checks.details.front() == "timed out after 200ms");
  CHECK(elapsed >= 400ms);
  CHECK(elapsed < 900ms);
  CHECK(server.accepted == 2);  // a timed-out connection is not reused
}

TEST_CASE("http probe: closing the kept connection fails a check in flight, once, on the loop") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  KeepAliveServer server(io, Behaviour::headers_then_hang);
  KeptProbeConnection kept;
  int calls = 0;
  ProbeResult seen;
  start_probe(
      io, children, target_of(server), 5000ms,
      [&](ProbeResult result) {
        ++calls;
        seen = std::move(result);
      },
      &kept);
  REQUIRE(run_until(
      io, [&] { return server.requests == 1; }, 1000ms));
  kept.close();
  CHECK(calls == 0);
  CHECK(run_until(
      io, [&] { return calls > 0; }, 500ms));
  run_for(io, 50ms);
  CHECK(calls == 1);
  CHECK_FALSE(seen.ok);
  CHECK(seen.detail == "probe connection closed");
}

TEST_CASE("http probe: a check while one is in flight goes over a one-off connection") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  KeepAliveServer server(io, Behaviour::keep);
  KeptProbeConnection kept;
  int calls = 0;
  int passed = 0;
  for (int i = 0; i < 2; ++i) {
    start_probe(
        io, children, target_of(server), 1000ms,
        [&](ProbeResult result) {
          ++calls;
          passed += result.ok ? 1 : 0;
        },
        &kept);
  }
  REQUIRE(run_until(
      io, [&] { return calls == 2; }, 1500ms));
  CHECK(passed == 2);
  CHECK(server.accepted == 2);
  CHECK(server.heads.size() == 2);
  const Checks more =
      run_checks(io, children, target_of(server), kept, 3);  // the kept one carries on
  CHECK(more.passed == 3);
  CHECK(server.accepted == 2);
}

TEST_CASE("http probe: the kept connection is close-on-exec") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  KeepAliveServer server(io, Behaviour::keep);
  KeptProbeConnection kept;
  REQUIRE(run_checks(io, children, target_of(server), kept, 1).passed == 1);
  // The probe's end of the connection: the socket whose peer is the server's port.
  int found = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(entry.path().filename().string());
    sockaddr_in peer{};
    socklen_t size = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) != 0 ||
        peer.sin_family != AF_INET || ntohs(peer.sin_port) != server.port()) {
      continue;
    }
    ++found;
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  }
  CHECK(found == 1);
}
