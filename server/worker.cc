#include "worker.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "control_channel.h"
#include "control_protocol.h"
#include "listeners.h"
#include "log.h"
#include "responder.h"
#include "sd_notify.h"
#include "server.h"

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

// Where READY=1 and STOPPING=1 go: the control channel, NOTIFY_SOCKET, or nowhere.
using Notify = std::function<void(std::string_view message)>;

Notify sd_notifier() {
  const char* socket_name = std::getenv("NOTIFY_SOCKET");
  if (socket_name == nullptr || *socket_name == '\0') return [](std::string_view) {};
  std::string name = socket_name;
  return [name](std::string_view message) {
    if (auto error = sd_notify_send(name, message); !error.empty()) log_line(error);
  };
}

[[noreturn]] void die_by_signal(int signal_number) {
  log_line("second " + std::string(::strsignal(signal_number)) + ": exiting at once");
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
  std::_Exit(128 + signal_number);
}

class Worker {
 public:
  explicit Worker(Server& server) : server_(server) {}

  void set_notify(Notify notify) { notify_ = std::move(notify); }
  void notify(std::string_view message) const { notify_(message); }

  void drain(std::string_view reason) {
    if (server_.draining()) return;
    log_line("draining (" + std::string(reason) +
             "): " + std::to_string(server_.connection_count()) + " connection(s) open, " +
             std::to_string(server_.requests_in_flight()) + " request(s) in flight");
    notify_(control::encode_stopping());
    server_.drain();
  }

 private:
  Server& server_;
  Notify notify_ = [](std::string_view) {};
};

std::optional<Site> make_site(const Options& options, std::string* error) {
  Site site{whoami_text(), std::nullopt, options.debug_endpoints};
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

}  // namespace

int run_worker(const Options& options) {
  std::signal(SIGPIPE, SIG_IGN);
  std::string error;
  auto site = make_site(options, &error);
  if (!site) {
    log_line(error);
    return kExitRuntimeError;
  }
  boost::asio::io_context io(1);
  Listeners listeners = open_listeners(io, options.listen);
  if (!listeners.error.empty()) {
    log_line(listeners.error);
    return kExitRuntimeError;
  }
  std::vector<std::string> addresses;
  for (auto& acceptor : listeners.acceptors)
    addresses.push_back(describe(acceptor.local_endpoint()));

  Server server(io, std::move(listeners.acceptors), Responder(std::move(*site)));
  Worker worker(server);
  server.set_on_drained([&io] {
    log_line("drained: exiting");
    io.stop();
  });

  std::unique_ptr<ControlChannel> control;
  if (const char* fd_text = std::getenv(control::kControlFdEnv)) {
    auto fd = parse_fd_number(fd_text);
    ControlChannel::Handlers handlers{
        [&](std::uint64_t seq) {
          control->send(
              control::encode_pong(seq, server.requests_served(), server.requests_in_flight()));
        },
        [&](std::string_view reason) { worker.drain(reason); }};
    if (fd) control = ControlChannel::adopt(io, *fd, std::move(handlers), &error);
    if (!control) {
      log_line(fd ? error
                  : std::string(control::kControlFdEnv) + "=" + fd_text +
                        " is not a file descriptor number");
      return kExitRuntimeError;
    }
    worker.set_notify([&](std::string_view message) { control->send(message); });
  } else {
    worker.set_notify(sd_notifier());
  }

  int signals_seen = 0;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& signal_error, int signal_number) {
        if (signal_error) return;
        if (++signals_seen > 1) die_by_signal(signal_number);
        worker.drain(::strsignal(signal_number));
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);

  server.start();
  if (control) control->start();
  for (const auto& address : addresses) {
    log_line("listening on " + address + (listeners.inherited ? " (inherited)" : ""));
  }
  worker.notify(control::encode_ready());
  io.run();
  return kExitOk;
}

}  // namespace deployctl::server
