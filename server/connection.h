// One accepted connection. It only moves bytes: it feeds the request parser, lets the
// Responder write each response into its output buffer, and sends each batch of pipelined
// responses with one write, in request order. It reads, or writes, never both at once.
// The byte stream is a template parameter: plain TCP or TLS over TCP (see connection.cc for
// the two instantiations); the server sees both through the small Connection interface, whose
// calls are per connection event (start, tick, drain), never per read or write.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
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
using PlainStream = boost::asio::ip::tcp::socket;
using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

// What the server holds of a connection.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void start() = 0;
  // The server began draining: an idle keep-alive connection closes after the drain grace
  // unless a request arrives in it; a busy one finishes the requests it has; both answer
  // with "Connection: close", then close (over TLS: with a close_notify alert).
  virtual void on_drain() = 0;
  // About once a second: closes the connection if it made no progress for too long.
  virtual void on_tick(Clock::time_point now) = 0;
  virtual void close() = 0;
};

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
  std::chrono::seconds handshake{10};  // TLS: from accept to the end of the handshake
  // Once the server drains, how long an idle keep-alive connection may still send a request.
  std::chrono::milliseconds drain_grace{250};
};

// Lifetime: shared_ptr. The host keeps one until on_closed(); every pending asynchronous
// operation keeps one, so the object outlives its handlers. Stream: PlainStream or TlsStream.
template <typename Stream>
class BasicConnection final : public Connection,
                              public std::enable_shared_from_this<BasicConnection<Stream>> {
 public:
  BasicConnection(Stream stream, ConnectionHost& host, ConnectionTimeouts timeouts);

  void start() override;
  void on_drain() override;
  void on_tick(Clock::time_point now) override;
  void close() override;

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
  void on_handshake(const boost::system::error_code& error);
  void finish();
  // TLS: sends close_notify, then discards input until the peer closes or the linger ends.
  // A read in flight is cancelled first (on_read then comes back here).
  void shut_down_tls();
  // Closes at once (plain) or after close_notify (TLS); for an idle connection.
  void close_gracefully();
  bool between_requests() const;
  bool peer_sent_nothing_more();
  // Has served what it was sent and waits for nothing: safe to close when draining.
  bool idle_after_requests();
  // Draining: closes the connection if it is still idle when the drain grace ends.
  void close_if_idle_after_grace();

  Stream stream_;
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
  bool handshaking_ = false;
  bool shutdown_after_read_ = false;  // TLS: shut down once the cancelled read returns
  bool reading_ = false;
  bool writing_ = false;
  bool sleeping_ = false;
  bool lingering_ = false;
  bool close_after_output_ = false;
  bool closed_ = false;
  bool received_any_ = false;  // a first request (or part of one) arrived
  bool grace_started_ = false;
};

using PlainConnection = BasicConnection<PlainStream>;
using TlsConnection = BasicConnection<TlsStream>;

}  // namespace deployctl::server
