#include "server.h"

#include <boost/asio/post.hpp>
#include <chrono>

#include "log.h"

namespace deployctl::server {
namespace {

bool out_of_resources(const boost::system::error_code& error) {
  return error == boost::asio::error::no_descriptors || error == boost::asio::error::no_memory ||
         error == boost::asio::error::no_buffer_space ||
         error == boost::system::errc::too_many_files_open_in_system;
}

// Time until the wall clock's next whole second, so the Date field changes on time.
std::chrono::milliseconds until_next_second(std::chrono::system_clock::time_point now) {
  auto into_second = now.time_since_epoch() % std::chrono::seconds(1);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::seconds(1) -
                                                               into_second) +
         std::chrono::milliseconds(1);
}

}  // namespace

Server::Server(boost::asio::io_context& io, std::vector<boost::asio::ip::tcp::acceptor> acceptors,
               Responder responder, ConnectionTimeouts timeouts,
               std::unique_ptr<boost::asio::ssl::context> tls)
    : io_(io),
      responder_(std::move(responder)),
      timeouts_(timeouts),
      tls_(std::move(tls)),
      tick_timer_(io) {
  for (auto& acceptor : acceptors) {
    listeners_.push_back(
        std::make_unique<Listener>(Listener{std::move(acceptor), boost::asio::steady_timer(io)}));
  }
}

void Server::start() {
  tick();
  for (auto& listener : listeners_) accept(*listener);
}

void Server::accept(Listener& listener) {
  listener.acceptor.async_accept([this, &listener](const boost::system::error_code& error,
                                                   boost::asio::ip::tcp::socket socket) {
    on_accept(listener, error, std::move(socket));
  });
}

void Server::on_accept(Listener& listener, const boost::system::error_code& error,
                       boost::asio::ip::tcp::socket socket) {
  if (!error) {  // served even if draining began meanwhile: the client may have sent a request
    auto connection = make_connection(std::move(socket));
    connections_.emplace(connection.get(), connection);
    connection->start();
  }
  if (error == boost::asio::error::operation_aborted || !listener.acceptor.is_open()) return;
  if (out_of_resources(error)) {
    log_line("accept failed: " + error.message() + "; retrying in 100 ms");
    listener.retry.expires_after(std::chrono::milliseconds(100));
    listener.retry.async_wait([this, &listener](const boost::system::error_code& timer_error) {
      if (!timer_error && listener.acceptor.is_open()) accept(listener);
    });
    return;
  }
  accept(listener);  // other errors (e.g. the peer reset before accept) concern one peer only
}

std::shared_ptr<Connection> Server::make_connection(boost::asio::ip::tcp::socket socket) {
  if (tls_) {
    return std::make_shared<TlsConnection>(TlsStream(std::move(socket), *tls_), *this, timeouts_);
  }
  return std::make_shared<PlainConnection>(std::move(socket), *this, timeouts_);
}

void Server::drain() {
  if (draining_) return;
  draining_ = true;
  for (auto& listener : listeners_) {
    boost::system::error_code ignored;
    listener->acceptor.close(ignored);
    listener->retry.cancel();
  }
  for (auto& connection : snapshot()) connection->on_drain();
  check_drained();
}

void Server::on_closed(Connection* connection) {
  connections_.erase(connection);
  check_drained();
}

void Server::check_drained() {
  if (!draining_ || drained_ || !connections_.empty()) return;
  drained_ = true;
  tick_timer_.cancel();
  if (on_drained_) boost::asio::post(io_, on_drained_);
}

void Server::tick() {
  auto wall_clock = std::chrono::system_clock::now();
  date_ = http::format_http_date(
      std::chrono::duration_cast<std::chrono::seconds>(wall_clock.time_since_epoch()).count());
  now_ = Clock::now();
  for (auto& connection : snapshot()) connection->on_tick(now_);
  if (drained_) return;
  tick_timer_.expires_after(until_next_second(wall_clock));
  tick_timer_.async_wait([this](const boost::system::error_code& error) {
    if (!error) tick();
  });
}

std::vector<std::shared_ptr<Connection>> Server::snapshot() const {
  std::vector<std::shared_ptr<Connection>> all;
  all.reserve(connections_.size());
  for (const auto& [raw, connection] : connections_) all.push_back(connection);
  return all;
}

}  // namespace deployctl::server
