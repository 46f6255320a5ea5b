#include "probes.h"

#include <signal.h>
#include <sys/wait.h>

#include <boost/asio/ssl.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <utility>

#include "clock.h"
#include "process.h"
#include "replica_machine.h"

namespace deployctl {
namespace {

using boost::asio::ip::tcp;
using boost::system::error_code;
namespace ssl = boost::asio::ssl;

// The https probe's client settings: TLS 1.2+, no certificate verification (the replica's
// certificate names the public host, not the loopback address probed; the probe checks that
// the replica completes a handshake and answers, as the http probe does without TLS).
ssl::context& probe_tls_context() {
  static ssl::context context = [] {
    ssl::context made(ssl::context::tls_client);
    made.set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    made.set_verify_mode(ssl::verify_none);
    return made;
  }();
  return context;
}

constexpr std::size_t kStatusLineCap = 8 * 1024;

std::string timed_out(Duration timeout) {
  return "timed out after " + std::to_string(to_ms(timeout)) + "ms";
}

// "Connection refused" -> "connection refused", to read well after a replica's name.
std::string describe_error(const error_code& ec) {
  std::string text = ec.message();
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// At most `limit` bytes of `raw`, with anything unprintable shown as '?', for a detail line.
std::string printable_prefix(std::string_view raw, std::size_t limit = 60) {
  std::string out(raw.substr(0, limit));
  for (char& c : out) {
    if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
  }
  if (raw.size() > limit) out += "...";
  return out;
}

bool is_valid_request_target(std::string_view path) {
  return std::all_of(path.begin(), path.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte != 0x7f;
  });
}

std::string host_header(const ProbeTarget& target) {
  const bool ipv6 = target.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + target.host + "]" : target.host) + ":" + std::to_string(target.port);
}

std::string http_request(const ProbeTarget& target) {
  const std::string path = target.path.empty() ? "/" : target.path;
  return "GET " + path + " HTTP/1.1\r\nHost: " + host_header(target) +
         "\r\nUser-Agent: deployctl-probe\r\nConnection: close\r\n\r\n";
}

// Holds a probe's `done` and calls it at most once: the deadline and the completion race.
class Once {
 public:
  explicit Once(ProbeDone done) : done_(std::move(done)) {}
  bool called() const { return !done_; }
  void call(ProbeResult result) {
    if (!done_) return;
    ProbeDone done = std::exchange(done_, nullptr);
    done(std::move(result));
  }

 private:
  ProbeDone done_;
};

// One http or tcp attempt. Every pending handler holds a shared_ptr to it.
class SocketProbe : public std::enable_shared_from_this<SocketProbe> {
 public:
  SocketProbe(boost::asio::io_context& io, const ProbeTarget& target, Duration timeout,
              ProbeDone done)
      : socket_(io),
        deadline_(io),
        http_(target.kind == HealthKind::http),
        request_(http_ ? http_request(target) : std::string()),
        timeout_(timeout),
        done_(std::move(done)) {
    if (http_ && target.tls) tls_.emplace(socket_, probe_tls_context());
  }

  void start(const tcp::endpoint& endpoint) {
    deadline_.expires_after(timeout_);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->finish(false, timed_out(self->timeout_));
    });
    socket_.async_connect(endpoint, [self = shared_from_this()](error_code ec) {
      self->on_connected(ec);
    });
  }

 private:
  void on_connected(error_code ec) {
    if (done_.called()) return;
    if (ec) return finish(false, describe_error(ec));
    if (!http_) return finish(true, "connected");
    if (!tls_) return send_request();
    tls_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](error_code tls_ec) {
      if (self->done_.called()) return;
      if (tls_ec) return self->finish(false, "TLS handshake failed: " + tls_ec.message());
      self->send_request();
    });
  }

  // Calls f with the stream the request goes over: the TLS stream or the plain socket.
  template <typename F>
  void with_stream(F f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(socket_);
    }
  }

  void send_request() {
    with_stream([this](auto& stream) {
      boost::asio::async_write(stream, boost::asio::buffer(request_),
                               [self = shared_from_this()](error_code ec, std::size_t) {
                                 if (self->done_.called()) return;
                                 if (ec) return self->finish(false, describe_error(ec));
                                 self->read_status_line();
                               });
    });
  }

  void read_status_line() {
    auto space = boost::asio::buffer(buffer_.data() + received_, buffer_.size() - received_);
    with_stream([this, space](auto& stream) {
      stream.async_read_some(space, [self = shared_from_this()](error_code ec, std::size_t n) {
        self->on_read(ec, n);
      });
    });
  }

  void on_read(error_code ec, std::size_t n) {
    if (done_.called()) return;
    received_ += n;
    const std::string_view seen(buffer_.data(), received_);
    const std::size_t newline = seen.find('\n');
    if (newline != std::string_view::npos) return judge_status_line(seen.substr(0, newline + 1));
    if (ec == boost::asio::error::eof || ec == ssl::error::stream_truncated) {
      return finish(false, received_ == 0 ? "connection closed without a response"
                                          : "connection closed inside the status line");
    }
    if (ec) return finish(false, describe_error(ec));
    if (received_ == buffer_.size()) return finish(false, "status line longer than 8 KiB");
    read_status_line();
  }

  void judge_status_line(std::string_view line) {
    const std::optional<int> status = parse_status_line(line);
    if (!status) {
      const std::string_view shown = line.substr(0, line.find_first_of("\r\n"));
      return finish(false, "not an HTTP/1.x status line: '" + printable_prefix(shown) + "'");
    }
    finish(*status >= 200 && *status < 300, "HTTP " + std::to_string(*status));
  }

  void finish(bool ok, std::string detail) {
    if (done_.called()) return;
    deadline_.cancel();
    error_code ignored;
    socket_.close(ignored);
    done_.call({ok, std::move(detail)});
  }

  tcp::socket socket_;
  std::optional<ssl::stream<tcp::socket&>> tls_;  // https probes: over socket_
  boost::asio::steady_timer deadline_;
  const bool http_;
  const std::string request_;
  std::array<char, kStatusLineCap> buffer_{};
  std::size_t received_ = 0;
  const Duration timeout_;
  Once done_;
};

// One command run. The ChildWatcher's watch holds it until the child is reaped.
class ExecProbe : public std::enable_shared_from_this<ExecProbe> {
 public:
  ExecProbe(boost::asio::io_context& io, Duration timeout, ProbeDone done)
      : deadline_(io), timeout_(timeout), done_(std::move(done)) {}

  // A command that cannot start fails the probe, reported on the loop like any other result.
  void start(ChildWatcher& children, const ProbeTarget& target) {
    if (target.argv.empty()) return fail_soon("exec probe has no command");
    SpawnRequest request;
    request.argv = target.argv;
    request.env = target.env;
    request.working_dir = target.working_dir;
    const SpawnResult spawned = spawn_process(request);
    if (spawned.pid <= 0) return fail_soon(spawned.message);
    pid_ = spawned.pid;
    children.watch(pid_, [self = shared_from_this()](int status) { self->on_exit(status); },
                   /*kill_group=*/true);
    deadline_.expires_after(timeout_);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->on_deadline();
    });
  }

 private:
  void on_exit(int status) {
    deadline_.cancel();
    if (WIFEXITED(status)) {
      const int code = WEXITSTATUS(status);
      return done_.call({code == 0, "exit code " + std::to_string(code)});
    }
    const std::optional<int> signal =
        WIFSIGNALED(status) ? std::optional<int>(WTERMSIG(status)) : std::nullopt;
    done_.call({false, "killed by " + describe_exit(std::nullopt, signal)});
  }

  void fail_soon(std::string detail) {
    boost::asio::post(deadline_.get_executor(),
                      [self = shared_from_this(), detail = std::move(detail)]() mutable {
                        self->done_.call({false, std::move(detail)});
                      });
  }

  // The child has not been reaped yet (on_exit has not run), so its pid still pins the group.
  void on_deadline() {
    if (done_.called()) return;
    signal_group(pid_, SIGKILL);
    done_.call({false, timed_out(timeout_)});
  }

  boost::asio::steady_timer deadline_;
  const Duration timeout_;
  pid_t pid_ = -1;
  Once done_;
};

void post_failure(boost::asio::io_context& io, ProbeDone done, std::string detail) {
  boost::asio::post(io, [done = std::move(done), detail = std::move(detail)]() mutable {
    done({false, std::move(detail)});
  });
}

void start_socket_probe(boost::asio::io_context& io, const ProbeTarget& target, Duration timeout,
                        ProbeDone done) {
  error_code ec;
  const auto address = boost::asio::ip::make_address(target.host, ec);
  if (ec) {
    return post_failure(io, std::move(done),
                        "invalid probe address '" + target.host + "': expected a numeric IP");
  }
  if (target.kind == HealthKind::http && !is_valid_request_target(target.path)) {
    return post_failure(io, std::move(done),
                        "invalid http probe path '" + printable_prefix(target.path) +
                            "': no spaces or control characters");
  }
  auto probe = std::make_shared<SocketProbe>(io, target, timeout, std::move(done));
  probe->start(tcp::endpoint(address, target.port));
}

void start_exec_probe(boost::asio::io_context& io, ChildWatcher& children,
                      const ProbeTarget& target, Duration timeout, ProbeDone done) {
  std::make_shared<ExecProbe>(io, timeout, std::move(done))->start(children, target);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

void start_probe(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                 Duration timeout, ProbeDone done) {
  switch (target.kind) {
    case HealthKind::http:
    case HealthKind::tcp:
      return start_socket_probe(io, target, timeout, std::move(done));
    case HealthKind::exec:
      return start_exec_probe(io, children, target, timeout, std::move(done));
    case HealthKind::control:
    case HealthKind::none:
      break;
  }
  post_failure(io, std::move(done), "not a probe kind: use http, tcp or exec");
}

std::optional<int> parse_status_line(std::string_view line) {
  if (line.ends_with('\n')) line.remove_suffix(1);
  if (line.ends_with('\r')) line.remove_suffix(1);
  constexpr std::string_view prefix = "HTTP/1.";
  if (!line.starts_with(prefix)) return std::nullopt;
  line.remove_prefix(prefix.size());
  // Now "<minor digit> SP <3 digits>" and then nothing or SP reason-phrase.
  if (line.size() < 5 || !is_digit(line[0]) || line[1] != ' ') return std::nullopt;
  if (!is_digit(line[2]) || !is_digit(line[3]) || !is_digit(line[4])) return std::nullopt;
  if (line.size() > 5 && line[5] != ' ') return std::nullopt;
  const int status = (line[2] - '0') * 100 + (line[3] - '0') * 10 + (line[4] - '0');
  if (status < 100 || status > 599) return std::nullopt;
  return status;
}

}  // namespace deployctl
