// The `http` health probe (edge): GET <path> over TCP, or TLS for a service with [tls], judged
// by the status of the complete answer. One HttpProbeConnection carries the checks of one
// replica over a kept-open connection (HTTP/1.1 keep-alive); what to do with it at each step
// ("reuse, reconnect or fail") is ProbeConnectionPolicy's (core/http_probe_connection.h).
#pragma once

#include <array>
#include <boost/asio/ssl.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "asio.h"
#include "http_probe_connection.h"
#include "probes.h"

namespace deployctl {

class HttpProbeConnection : public std::enable_shared_from_this<HttpProbeConnection> {
 public:
  explicit HttpProbeConnection(boost::asio::io_context& io);

  // Starts one check: `done` is called exactly once, on the loop (never inside this call),
  // within `timeout` (+ a few ms). With `keep`, a connection that the answer allows to persist
  // stays open for the next check; without, the request asks the server to close and the
  // connection is closed after the answer. Precondition: !busy().
  void check(const ProbeTarget& target, const boost::asio::ip::tcp::endpoint& endpoint,
             Duration timeout, bool keep, ProbeDone done);

  bool busy() const { return busy_; }

  // Closes the socket now; a check in flight fails ("probe connection closed") on the loop.
  // Terminal: the object takes no further checks.
  void close();

 private:
  template <typename F>
  void with_stream(F f);
  template <typename F>
  auto guarded(F f);
  bool kept_alive() const;
  void connect();
  void send_request();
  void read_more();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void judge();
  void transport_failed(std::string detail);
  void post_failure(std::string detail);
  void finish(bool ok, std::string detail);
  void close_socket();

  // One TCP connection, with TLS over it for [tls] services. Every pending operation's handler
  // holds its transport: a reconnect makes a new one, never destroys a stream in use.
  struct Transport {
    Transport(boost::asio::io_context& io, bool tls);
    boost::asio::ip::tcp::socket socket;
    std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls;
  };

  boost::asio::io_context& io_;
  std::shared_ptr<Transport> transport_;  // null or closed when no connection is kept
  boost::asio::steady_timer deadline_;
  ProbeConnectionPolicy policy_;
  boost::asio::ip::tcp::endpoint endpoint_;
  bool use_tls_ = false;
  bool keep_ = true;
  std::string request_;
  std::string response_;  // of the current check: head, then body (bounded, see on_read)
  std::array<char, 4096> chunk_{};
  std::optional<ResponseHead> head_;
  Duration timeout_{0};
  ProbeDone done_;
  std::uint64_t generation_ = 0;  // per check: handlers of an earlier check are stale
  bool busy_ = false;
  bool closed_ = false;
};

}  // namespace deployctl
