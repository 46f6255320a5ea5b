#include "probes.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <utility>

#include "clock.h"
#include "http_probe.h"
#include "process.h"
#include "replica_machine.h"

namespace deployctl {
namespace {

using boost::asio::ip::tcp;
using boost::system::error_code;

std::string timed_out(Duration timeout) {
  return "timed out after " + std::to_string(to_ms(timeout)) + "ms";
}

// "Connection refused" -> "connection refused", to read well after a replica's name.
std::string describe_error(const error_code& ec) {
  std::string text = ec.message();
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

bool is_valid_request_target(std::string_view path) {
  return std::all_of(path.begin(), path.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte != 0x7f;
  });
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

// One tcp attempt: a connect. Every pending handler holds a shared_ptr to it.
class TcpProbe : public std::enable_shared_from_this<TcpProbe> {
 public:
  TcpProbe(boost::asio::io_context& io, Duration timeout, ProbeDone done)
      : socket_(io), deadline_(io), timeout_(timeout), done_(std::move(done)) {}

  void start(const tcp::endpoint& endpoint) {
    deadline_.expires_after(timeout_);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->finish(false, timed_out(self->timeout_));
    });
    socket_.async_connect(endpoint, [self = shared_from_this()](error_code ec) {
      self->finish(!ec, ec ? describe_error(ec) : "connected");
    });
  }

 private:
  void finish(bool ok, std::string detail) {
    if (done_.called()) return;
    deadline_.cancel();
    error_code ignored;
    socket_.close(ignored);
    done_.call({ok, std::move(detail)});
  }

  tcp::socket socket_;
  boost::asio::steady_timer deadline_;
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
    children.watch(
        pid_, [self = shared_from_this()](int status) { self->on_exit(status); },
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

// An http probe goes over `kept` when it is free, else over a one-off connection.
void start_http_probe(boost::asio::io_context& io, const ProbeTarget& target,
                      const tcp::endpoint& endpoint, Duration timeout, ProbeDone done,
                      std::shared_ptr<HttpProbeConnection>* kept) {
  const bool reuse = kept && !(*kept && (*kept)->busy());
  if (reuse && !*kept) *kept = std::make_shared<HttpProbeConnection>(io);
  auto connection = reuse ? *kept : std::make_shared<HttpProbeConnection>(io);
  connection->check(target, endpoint, timeout, reuse, std::move(done));
}

void start_socket_probe(boost::asio::io_context& io, const ProbeTarget& target, Duration timeout,
                        ProbeDone done, std::shared_ptr<HttpProbeConnection>* kept) {
  error_code ec;
  const auto address = boost::asio::ip::make_address(target.host, ec);
  if (ec) {
    return post_failure(io, std::move(done),
                        "invalid probe address '" + target.host + "': expected a numeric IP");
  }
  const tcp::endpoint endpoint(address, target.port);
  if (target.kind == HealthKind::tcp) {
    return std::make_shared<TcpProbe>(io, timeout, std::move(done))->start(endpoint);
  }
  if (!is_valid_request_target(target.path)) {
    return post_failure(io, std::move(done),
                        "invalid http probe path '" + printable_prefix(target.path) +
                            "': no spaces or control characters");
  }
  start_http_probe(io, target, endpoint, timeout, std::move(done), kept);
}

void start_exec_probe(boost::asio::io_context& io, ChildWatcher& children,
                      const ProbeTarget& target, Duration timeout, ProbeDone done) {
  std::make_shared<ExecProbe>(io, timeout, std::move(done))->start(children, target);
}

}  // namespace

void KeptProbeConnection::close() {
  if (connection_) connection_->close();
  connection_.reset();
}

void start_probe(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                 Duration timeout, ProbeDone done, KeptProbeConnection* kept) {
  switch (target.kind) {
    case HealthKind::http:
    case HealthKind::tcp:
      return start_socket_probe(io, target, timeout, std::move(done),
                                kept ? &kept->connection_ : nullptr);
    case HealthKind::exec:
      return start_exec_probe(io, children, target, timeout, std::move(done));
    case HealthKind::control:
    case HealthKind::none:
      break;
  }
  post_failure(io, std::move(done), "not a probe kind: use http, tcp or exec");
}

}  // namespace deployctl
