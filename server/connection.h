// One accepted TCP connection. It only moves bytes: it feeds the request parser, lets the
// Responder write each response into its output buffer, and sends each batch of pipelined
// responses with one write, in request order. It reads, or writes, never both at once.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "input_buffer.h"
#include "request_parser.h"
#include "responder.h"
#include "response.h"

namespace deployctl::server {

using Clock = std::chrono::steady_clock;

class Connection;

// What a connection needs from the server that owns it. Event-loop thread only.
class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  virtual const Responder& responder() const = 0;
  virtual std::string_view date() const = 0;  // the current HTTP date, refreshed every second
  virtual bool draining() const = 0;
  virtual Clock::time_point now() const = 0;  // coarse: refreshed every second
  virtual void on_request_started() = 0;
  virtual void on_requests_finished(std::size_t count) = 0;   // responses fully sent
  virtual void on_requests_abandoned(std::size_t count) = 0;  // closed before fully sent
  virtual void on_closed(Connection* connection) = 0;         // last call from a connection
};

struct ConnectionTimeouts {
  std::chrono::seconds idle{60};     // waiting on the peer without progress
  std::chrono::seconds draining{5};  // the same, once the server drains
  std::chrono::seconds linger{2};    // discarding unread input after the last response
  // Once the server drains, how long an idle keep-alive connection may still send a request.
  std::chrono::milliseconds drain_grace{250};
};

// Lifetime: shared_ptr. The host keeps one until on_closed(); every pending asynchronous
// operation keeps one, so the object outlives its handlers.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, ConnectionHost& host,
             ConnectionTimeouts timeouts);

  void start();
  // The server began draining: an idle keep-alive connection closes after the drain grace
  // unless a request arrives in it; a busy one finishes the requests it has; both answer
  // with "Connection: close", then close.
  void on_drain();
  // About once a second: closes the connection if it made no progress for too long.
  void on_tick(Clock::time_point now);
  void close();

 private:
  struct PendingSleep {
    std::chrono::milliseconds delay;
    bool head_only;
    http::Persistence requested;
  };

  void advance();
  void answer_buffered_requests();
  void answer(const http::Request& request);
  void answer_parse_error(http::ParseError error);
  void append_sleep_response();
  void append_file_chunk();
  void read_more();
  void on_read(const boost::system::error_code& error, std::size_t bytes);
  void write_output();
  void on_write(const boost::system::error_code& error);
  void on_sleep_done(const boost::system::error_code& error);
  void finish();
  bool between_requests() const;
  bool peer_sent_nothing_more();
  // Has served what it was sent and waits for nothing: safe to close when draining.
  bool idle_after_requests();
  // Draining: closes the connection if it is still idle when the drain grace ends.
  void close_if_idle_after_grace();

  boost::asio::ip::tcp::socket socket_;
  ConnectionHost& host_;
  ConnectionTimeouts timeouts_;
  boost::asio::steady_timer sleep_timer_;
  boost::asio::steady_timer grace_timer_;
  http::RequestParser parser_;
  http::InputBuffer input_;
  std::string output_;               // responses of the current batch
  std::size_t responses_ready_ = 0;  // complete responses in output_
  std::size_t unfinished_ = 0;       // requests started and not yet fully sent
  std::optional<PendingSleep> pending_sleep_;
  std::optional<StreamFile> file_;  // a body being sent in chunks
  Clock::time_point last_progress_;
  Clock::time_point linger_started_;
  bool reading_ = false;
  bool writing_ = false;
  bool sleeping_ = false;
  bool lingering_ = false;
  bool close_after_output_ = false;
  bool closed_ = false;
  bool received_any_ = false;  // a first request (or part of one) arrived
  bool grace_started_ = false;
};

}  // namespace deployctl::server
