// The HTTP server: accepts on its listening sockets, owns the connections, keeps the request
// counters the control protocol reports, and drains. Single-threaded: every member runs on
// the io_context's one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "connection.h"
#include "http_date.h"
#include "responder.h"

namespace deployctl::server {

class Server final : public ConnectionHost {
 public:
  // `acceptors` are open and listening. With a TLS context, every connection speaks TLS.
  Server(boost::asio::io_context& io, std::vector<boost::asio::ip::tcp::acceptor> acceptors,
         Responder responder, ConnectionTimeouts timeouts = {},
         std::unique_ptr<boost::asio::ssl::context> tls = nullptr);

  void start();
  // Stops accepting (closes the listening sockets), closes idle connections and lets busy ones
  // finish. Idempotent. `on_drained` runs once no connection remains.
  void drain();
  void set_on_drained(std::function<void()> on_drained) { on_drained_ = std::move(on_drained); }

  std::uint64_t requests_served() const { return finished_; }
  std::uint64_t requests_in_flight() const { return started_ - finished_ - abandoned_; }
  std::size_t connection_count() const { return connections_.size(); }

  // ConnectionHost
  const Responder& responder() const override { return responder_; }
  std::string_view date() const override { return http::view(date_); }
  bool draining() const override { return draining_; }
  Clock::time_point now() const override { return now_; }
  void on_request_started() override { ++started_; }
  void on_requests_finished(std::size_t count) override { finished_ += count; }
  void on_requests_abandoned(std::size_t count) override { abandoned_ += count; }
  void on_closed(Connection* connection) override;

 private:
  struct Listener {
    boost::asio::ip::tcp::acceptor acceptor;
    boost::asio::steady_timer retry;  // after running out of file descriptors
  };

  void accept(Listener& listener);
  void on_accept(Listener& listener, const boost::system::error_code& error,
                 boost::asio::ip::tcp::socket socket);
  void tick();
  void check_drained();
  std::shared_ptr<Connection> make_connection(boost::asio::ip::tcp::socket socket);
  std::vector<std::shared_ptr<Connection>> snapshot() const;

  boost::asio::io_context& io_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  Responder responder_;
  ConnectionTimeouts timeouts_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  boost::asio::steady_timer tick_timer_;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
  http::HttpDate date_{};
  Clock::time_point now_;
  std::uint64_t started_ = 0;
  std::uint64_t finished_ = 0;
  std::uint64_t abandoned_ = 0;
  bool draining_ = false;
  bool drained_ = false;
  std::function<void()> on_drained_;
};

}  // namespace deployctl::server
