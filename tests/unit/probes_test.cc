// Health probes, tested for real: sockets on 127.0.0.1 answered by a tiny HTTP responder on the
// same event loop, and real commands run through /bin/sh.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "clock.h"
#include "io_loop.h"
#include "probes.h"
#include "temp_dir.h"

using namespace deployctl;
using deployctl::test::TempDir;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;
using boost::system::error_code;

namespace {

using deployctl::testing::run_for;
using deployctl::testing::run_until;

struct ProbeRun {
  int calls = 0;
  bool called_inline = false;
  ProbeResult result;
  Duration elapsed{0};
};

// Starts one probe and runs the loop until it reports (bounded by timeout + 500ms), then for
// `settle` more, so that a second call of `done` would be seen.
ProbeRun run_probe(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                   Duration timeout, Duration settle = 50ms) {
  ProbeRun run;
  const TimePoint started = Clock::now();
  start_probe(io, children, target, timeout, [&run, started](ProbeResult result) {
    ++run.calls;
    run.result = std::move(result);
    run.elapsed = std::chrono::duration_cast<Duration>(Clock::now() - started);
  });
  run.called_inline = run.calls > 0;
  run_until(io, [&] { return run.calls > 0; }, timeout + 500ms);
  run_for(io, settle);
  return run;
}

// Accepts one connection on 127.0.0.1, records the request head, then answers: each of
// `answer` written 20ms apart and the connection closed; an empty answer closes at once;
// no answer (nullopt) keeps the connection open and notes when the probe closes it.
class TestHttpResponder {
 public:
  TestHttpResponder(boost::asio::io_context& io, std::optional<std::vector<std::string>> answer)
      : acceptor_(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        socket_(io),
        pause_(io),
        answer_(std::move(answer)) {
    acceptor_.async_accept(socket_, [this](error_code ec) {
      if (!ec) read_request();
    });
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  std::string request;
  bool peer_closed = false;

 private:
  void read_request() {
    boost::asio::async_read_until(socket_, boost::asio::dynamic_buffer(request), "\r\n\r\n",
                                  [this](error_code ec, std::size_t) {
                                    if (ec) return;
                                    if (!answer_) return wait_for_close();
                                    write_next();
                                  });
  }

  void write_next() {
    if (next_ == answer_->size()) {
      error_code ignored;
      socket_.close(ignored);
      return;
    }
    boost::asio::async_write(socket_, boost::asio::buffer((*answer_)[next_++]),
                             [this](error_code ec, std::size_t) {
                               if (ec) return;
                               pause_.expires_after(20ms);
                               pause_.async_wait([this](error_code) { write_next(); });
                             });
  }

  void wait_for_close() {
    socket_.async_read_some(boost::asio::buffer(scratch_), [this](error_code ec, std::size_t) {
      if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset) {
        peer_closed = true;
      } else if (!ec) {
        wait_for_close();
      }
    });
  }

  tcp::acceptor acceptor_;
  tcp::socket socket_;
  boost::asio::steady_timer pause_;
  std::optional<std::vector<std::string>> answer_;
  std::size_t next_ = 0;
  char scratch_[256];
};

ProbeTarget http_target(std::uint16_t port, std::string path = "/healthz") {
  ProbeTarget target{HealthKind::http};
  target.host = "127.0.0.1";
  target.port = port;
  target.path = std::move(path);
  return target;
}

ProbeTarget tcp_target(std::uint16_t port) {
  ProbeTarget target{HealthKind::tcp};
  target.host = "127.0.0.1";
  target.port = port;
  return target;
}

ProbeTarget sh_target(const std::string& script, std::vector<std::string> args = {}) {
  ProbeTarget target{HealthKind::exec};
  target.argv = {"/bin/sh", "-c", script, "sh"};
  target.argv.insert(target.argv.end(), args.begin(), args.end());
  target.env = {"PATH=/usr/bin:/bin"};
  return target;
}

// A port on 127.0.0.1 that was free a moment ago and has no listener now.
std::uint16_t closed_port(boost::asio::io_context& io) {
  tcp::acceptor probe(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

// Processes of group `pgid` that are still alive (zombies waiting for a reaper don't count).
int live_members(pid_t pgid) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto after_name = line.rfind(')');
    if (after_name == std::string::npos) continue;
    std::istringstream fields(line.substr(after_name + 2));
    char state = 0;
    long parent = 0, group = 0;
    if (fields >> state >> parent >> group && group == pgid && state != 'Z' && state != 'X') {
      ++count;
    }
  }
  return count;
}

pid_t read_pid_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

}  // namespace

TEST_CASE("probes: parse_status_line reads the code of an HTTP/1.x status line") {
  CHECK(parse_status_line("HTTP/1.1 200 OK") == 200);
  CHECK(parse_status_line("HTTP/1.1 204 No Content\r\n") == 204);
  CHECK(parse_status_line("HTTP/1.0 503 Service Unavailable\n") == 503);
  CHECK(parse_status_line("HTTP/1.1 404") == 404);
  CHECK(parse_status_line("HTTP/1.1 302 ") == 302);
  CHECK(parse_status_line("HTTP/1.1 100 Continue") == 100);
  CHECK(parse_status_line("HTTP/1.1 599 x") == 599);
}

TEST_CASE("probes: parse_status_line refuses garbage and codes that are not 3 digits") {
  CHECK_FALSE(parse_status_line(""));
  CHECK_FALSE(parse_status_line("SSH-2.0-OpenSSH_9.2"));
  CHECK_FALSE(parse_status_line("http/1.1 200 OK"));
  CHECK_FALSE(parse_status_line("HTTP/2 200"));
  CHECK_FALSE(parse_status_line("HTTP/1.1"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 "));
  CHECK_FALSE(parse_status_line("HTTP/1.1 20 OK"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 2000 OK"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 20x OK"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 -20 OK"));
  CHECK_FALSE(parse_status_line("HTTP/1.1  200 OK"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 099 Low"));
  CHECK_FALSE(parse_status_line("HTTP/1.1 600 High"));
  CHECK_FALSE(parse_status_line("HTTP/1.x 200 OK"));
  CHECK_FALSE(parse_status_line(" HTTP/1.1 200 OK"));
}

TEST_CASE("probes: http 200 passes and the request is the documented GET") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TestHttpResponder server(io, std::vector<std::string>{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"});
  ProbeRun run = run_probe(io, children, http_target(server.port()), 1000ms);
  CHECK_FALSE(run.called_inline);
  CHECK(run.calls == 1);
  CHECK(run.result.ok);
  CHECK(run.result.detail == "HTTP 200");
  CHECK(server.request == "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(server.port()) +
                              "\r\nUser-Agent: deployctl-probe\r\nConnection: close\r\n\r\n");
}

TEST_CASE("probes: http 503 fails with the status in the detail") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TestHttpResponder server(io, std::vector<std::string>{"HTTP/1.0 503 Service Unavailable\r\n\r\n"});
  ProbeRun run = run_probe(io, children, http_target(server.port()), 1000ms);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail == "HTTP 503");
}

TEST_CASE("probes: http reads a status line that arrives in pieces") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TestHttpResponder server(
      io, std::vector<std::string>{"HTTP/1.1 2", "04 No Con", "tent\r\n\r\n"});
  ProbeRun run = run_probe(io, children, http_target(server.port(), "/"), 1000ms);
  CHECK(run.calls == 1);
  CHECK(run.result.ok);
  CHECK(run.result.detail == "HTTP 204");
}

TEST_CASE("probes: http that never answers times out, once, and the socket is closed") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TestHttpResponder server(io, std::nullopt);
  ProbeRun run = run_probe(io, children, http_target(server.port()), 200ms, 100ms);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail == "timed out after 200ms");
  CHECK(run.elapsed >= 200ms);
  CHECK(run.elapsed < 300ms);
  CHECK(run_until(io, [&] { return server.peer_closed; }, 500ms));
}

TEST_CASE("probes: http answers that are not a 2xx status line fail with what was seen") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  SUBCASE("not HTTP") {
    TestHttpResponder server(io, std::vector<std::string>{"SSH-2.0-OpenSSH_9.2\x01\r\n"});
    ProbeRun run = run_probe(io, children, http_target(server.port()), 1000ms);
    CHECK(run.calls == 1);
    CHECK_FALSE(run.result.ok);
    CHECK(run.result.detail == "not an HTTP/1.x status line: 'SSH-2.0-OpenSSH_9.2?'");
  }
  SUBCASE("closed without a response") {
    TestHttpResponder server(io, std::vector<std::string>{});
    ProbeRun run = run_probe(io, children, http_target(server.port()), 1000ms);
    CHECK(run.calls == 1);
    CHECK_FALSE(run.result.ok);
    CHECK(run.result.detail == "connection closed without a response");
  }
  SUBCASE("a head longer than 16 KiB") {
    TestHttpResponder server(
        io, std::vector<std::string>{"HTTP/1.1 200 OK\r\nX: " + std::string(17000, 'a')});
    ProbeRun run = run_probe(io, children, http_target(server.port()), 1000ms);
    CHECK(run.calls == 1);
    CHECK_FALSE(run.result.ok);
    CHECK(run.result.detail == "response head longer than 16384 bytes");
  }
}

TEST_CASE("probes: http to a closed port is refused quickly") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  ProbeRun run = run_probe(io, children, http_target(closed_port(io)), 1000ms);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail == "connection refused");
  CHECK(run.elapsed < 200ms);
}

TEST_CASE("probes: tcp connect to a listening port passes; a closed port is refused quickly") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  SUBCASE("listening") {
    tcp::acceptor listener(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    ProbeRun run = run_probe(io, children, tcp_target(listener.local_endpoint().port()), 1000ms);
    CHECK_FALSE(run.called_inline);
    CHECK(run.calls == 1);
    CHECK(run.result.ok);
    CHECK(run.result.detail == "connected");
  }
  SUBCASE("closed") {
    ProbeRun run = run_probe(io, children, tcp_target(closed_port(io)), 1000ms);
    CHECK(run.calls == 1);
    CHECK_FALSE(run.result.ok);
    CHECK(run.result.detail == "connection refused");
    CHECK(run.elapsed < 200ms);
  }
}

TEST_CASE("probes: an address that is not a numeric IP fails on the loop, not inline") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  ProbeTarget target = tcp_target(80);
  target.host = "localhost";
  ProbeRun run = run_probe(io, children, target, 1000ms);
  CHECK_FALSE(run.called_inline);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail == "invalid probe address 'localhost': expected a numeric IP");
}

TEST_CASE("probes: exec passes on exit 0 and fails with the exit code otherwise") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  ProbeRun pass = run_probe(io, children, sh_target("exit 0"), 1000ms);
  CHECK_FALSE(pass.called_inline);
  CHECK(pass.calls == 1);
  CHECK(pass.result.ok);
  CHECK(pass.result.detail == "exit code 0");

  ProbeRun fail = run_probe(io, children, sh_target("exit 3"), 1000ms);
  CHECK(fail.calls == 1);
  CHECK_FALSE(fail.result.ok);
  CHECK(fail.result.detail == "exit code 3");

  ProbeRun killed = run_probe(io, children, sh_target("kill -TERM $$"), 1000ms);
  CHECK(killed.calls == 1);
  CHECK_FALSE(killed.result.ok);
  CHECK(killed.result.detail == "killed by signal 15 (SIGTERM)");
}

TEST_CASE("probes: exec that overruns is timed out and its whole process group killed") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TempDir dir;
  const auto pid_file = dir.path / "pid";
  ProbeRun run = run_probe(io, children,
                           sh_target("sleep 10 & echo $$ > \"$1\"; wait", {pid_file.string()}),
                           300ms, 0ms);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail == "timed out after 300ms");
  CHECK(run.elapsed >= 300ms);
  CHECK(run.elapsed < 400ms);
  const pid_t group = read_pid_file(pid_file);
  REQUIRE(group > 0);
  // The leader is reaped by the ChildWatcher; its background sleep dies with the group.
  CHECK(run_until(io, [&] { return kill(group, 0) != 0 && errno == ESRCH; }, 1000ms));
  CHECK(run_until(io, [&] { return live_members(group) == 0; }, 1000ms));
  CHECK(run.calls == 1);
}

TEST_CASE("probes: exec that passes leaves nothing of its process group running") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  TempDir dir;
  const auto pid_file = dir.path / "pid";
  ProbeRun run = run_probe(io, children,
                           sh_target("sleep 10 & echo $$ > \"$1\"; exit 0", {pid_file.string()}),
                           1000ms);
  CHECK(run.result.ok);
  const pid_t group = read_pid_file(pid_file);
  REQUIRE(group > 0);
  CHECK(run_until(io, [&] { return live_members(group) == 0; }, 1000ms));
}

TEST_CASE("probes: exec runs with the target's environment and working directory") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  SUBCASE("environment") {
    ProbeTarget target = sh_target("test \"$PROBE_VALUE\" = expected");
    target.env = {"PROBE_VALUE=expected"};
    CHECK(run_probe(io, children, target, 1000ms).result.ok);
    target.env = {"PROBE_VALUE=other"};
    CHECK(run_probe(io, children, target, 1000ms).result.detail == "exit code 1");
  }
  SUBCASE("working directory") {
    TempDir dir;
    std::ofstream(dir.path / "marker") << "x";
    ProbeTarget target = sh_target("test -f marker");
    target.working_dir = dir.path.string();
    CHECK(run_probe(io, children, target, 1000ms).result.ok);
    target.working_dir = "/";
    CHECK(run_probe(io, children, target, 1000ms).result.detail == "exit code 1");
  }
}

TEST_CASE("probes: an exec command that cannot start fails on the loop with the reason") {
  boost::asio::io_context io;
  ChildWatcher children(io);
  ProbeTarget target{HealthKind::exec};
  target.argv = {"/nonexistent/deployctl-check"};
  ProbeRun run = run_probe(io, children, target, 1000ms);
  CHECK_FALSE(run.called_inline);
  CHECK(run.calls == 1);
  CHECK_FALSE(run.result.ok);
  CHECK(run.result.detail ==
        "cannot execute '/nonexistent/deployctl-check': No such file or directory");

  target.argv.clear();
  ProbeRun empty = run_probe(io, children, target, 1000ms);
  CHECK(empty.calls == 1);
  CHECK(empty.result.detail == "exec probe has no command");
}
