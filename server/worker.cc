#include "worker.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "control_channel.h"
#include "control_protocol.h"
#include "listeners.h"
#include "log.h"
#include "responder.h"
#include "sd_notify.h"
#include "server.h"
#include "tls.h"

namespace deployctl::server {
namespace {

std::string whoami_text() {
  const char* service = std::getenv(control::kServiceEnv);
  const char* replica = std::getenv(control::kReplicaEnv);
  std::string name = "standalone";
  if (service != nullptr && *service != '\0') {
    name = service;
    if (replica != nullptr && *replica != '\0') name += std::string(".") + replica;
  }
  return name + " " + std::to_string(::getpid()) + "\n";
}

std::optional<Site> make_site(const Options& options, std::string* error) {
  Site site{whoami_text(), std::nullopt, options.debug_endpoints, options.leak_per_request,
            options.redirect_https_port};
  if (options.root) {
    auto root = StaticRoot::open(*options.root);
    if (auto* message = std::get_if<std::string>(&root)) {
      *error = *message;
      return std::nullopt;
    }
    site.root = std::get<StaticRoot>(std::move(root));
  }
  return site;
}

[[noreturn]] void die_by_signal(int signal_number) {
  log_line("second " + std::string(::strsignal(signal_number)) + ": exiting at once");
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
  std::_Exit(128 + signal_number);
}

// Everything one deploy-server process runs, wired together. Lives on run_worker's stack.
class Worker {
 public:
  Worker(boost::asio::io_context& io, Server& server) : io_(io), server_(server), signals_(io) {}

  // Adopts DEPLOYCTL_CONTROL_FD if set, else uses NOTIFY_SOCKET if set. False on failure.
  bool connect_supervisor(std::string* error);
  void start(const std::vector<std::string>& addresses, bool inherited);

 private:
  void notify(std::string_view message);
  void drain(std::string_view reason);
  void answer_ping(std::uint64_t seq);
  void wait_for_signal();

  boost::asio::io_context& io_;
  Server& server_;
  boost::asio::signal_set signals_;
  int signals_seen_ = 0;
  std::unique_ptr<ControlChannel> control_;
  std::string notify_socket_;  // NOTIFY_SOCKET, used only without a control channel
};

bool Worker::connect_supervisor(std::string* error) {
  const char* fd_text = std::getenv(control::kControlFdEnv);
  if (fd_text == nullptr) {
    if (const char* name = std::getenv("NOTIFY_SOCKET")) notify_socket_ = name;
    return true;
  }
  auto fd = parse_fd_number(fd_text);
  if (!fd) {
    *error = std::string(control::kControlFdEnv) + "=" + fd_text +
             " is not a file descriptor number (unset it to run standalone)";
    return false;
  }
  ControlChannel::Handlers handlers{[this](std::uint64_t seq) { answer_ping(seq); },
                                    [this](std::string_view reason) { drain(reason); }};
  control_ = ControlChannel::adopt(io_, *fd, std::move(handlers), error);
  return control_ != nullptr;
}

void Worker::start(const std::vector<std::string>& addresses, bool inherited) {
  server_.set_on_drained([this] {
    log_line("drained: exiting");
    io_.stop();
  });
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  wait_for_signal();
  server_.start();
  if (control_) control_->start();
  for (const auto& address : addresses) {
    log_line("listening on " + address + (inherited ? " (inherited)" : ""));
  }
  notify(control::encode_ready());
}

void Worker::notify(std::string_view message) {
  if (control_) {
    control_->send(message);
  } else if (!notify_socket_.empty()) {
    if (auto error = sd_notify_send(notify_socket_, message); !error.empty()) log_line(error);
  }
}

void Worker::drain(std::string_view reason) {
  if (server_.draining()) return;
  log_line("draining (" + std::string(reason) + "): " + std::to_string(server_.connection_count()) +
           " connection(s) open, " + std::to_string(server_.requests_in_flight()) +
           " request(s) in flight");
  notify(control::encode_stopping());
  server_.drain();
}

void Worker::answer_ping(std::uint64_t seq) {
  control_->send(
      control::encode_pong(seq, server_.requests_served(), server_.requests_in_flight()));
}

void Worker::wait_for_signal() {
  signals_.async_wait([this](const boost::system::error_code& error, int signal_number) {
    if (error) return;
    if (++signals_seen_ > 1) die_by_signal(signal_number);
    drain(::strsignal(signal_number));
    wait_for_signal();
  });
}

}  // namespace

int run_worker(const Options& options) {
  std::signal(SIGPIPE, SIG_IGN);
  std::string error;
  auto site = make_site(options, &error);
  if (!site) {
    log_line(error);
    return kExitRuntimeError;
  }
  // TLS comes first: a bad certificate or key fails the start before any socket is touched.
  std::unique_ptr<boost::asio::ssl::context> tls;
  auto tls_files =
      resolve_tls_files(options.tls_cert, options.tls_key, std::getenv(control::kTlsCertEnv),
                        std::getenv(control::kTlsKeyEnv), &error);
  if (tls_files) {
    if (const char* ticket_key = std::getenv(control::kTlsTicketKeyEnv)) {
      tls_files->ticket_key = ticket_key;
    }
    tls = make_tls_context(*tls_files, &error);
  }
  if (!error.empty()) {
    log_line(error);
    return kExitRuntimeError;
  }
  // One thread, so Asio may skip locking in its scheduler and reactor.
  boost::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  Listeners listeners = open_listeners(io, options.listen);
  if (!listeners.error.empty()) {
    log_line(listeners.error);
    return kExitRuntimeError;
  }
  std::vector<std::string> addresses;
  for (auto& acceptor : listeners.acceptors) {
    addresses.push_back(describe(acceptor.local_endpoint()));
  }
  ConnectionTimeouts timeouts;
  timeouts.idle = std::chrono::seconds(options.idle_timeout_seconds);
  timeouts.drain_grace = std::chrono::milliseconds(options.drain_grace_ms);
  timeouts.handshake = std::chrono::seconds(options.handshake_timeout_seconds);
  if (tls) log_line("tls: " + tls_files->cert + " (TLS 1.2, 1.3; ALPN http/1.1)");
  Server server(io, std::move(listeners.acceptors), Responder(std::move(*site)), timeouts,
                std::move(tls));
  Worker worker(io, server);
  if (!worker.connect_supervisor(&error)) {
    log_line(error);
    return kExitRuntimeError;
  }
  worker.start(addresses, listeners.inherited);
  io.run();
  return kExitOk;
}

}  // namespace deployctl::server
