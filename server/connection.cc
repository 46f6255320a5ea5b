#include "connection.h"

#include <openssl/ssl.h>

#include <boost/asio/write.hpp>
#include <type_traits>
#include <utility>

namespace deployctl::server {
namespace {

constexpr std::size_t kInitialInput = 4 * 1024;
constexpr std::size_t kMaxInput = 20 * 1024;    // more than the parser's header block limit
constexpr std::size_t kBatchBytes = 64 * 1024;  // stop answering pipelined requests here
constexpr std::size_t kFileChunk = 64 * 1024;
constexpr std::size_t kKeptOutputCapacity = 256 * 1024;

template <typename Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

boost::asio::ip::tcp::socket& tcp_layer(PlainStream& stream) { return stream; }
boost::asio::ip::tcp::socket& tcp_layer(TlsStream& stream) { return stream.next_layer(); }

// No input waiting anywhere: in the socket, nor (TLS) decrypted or undecrypted in OpenSSL.
bool no_input_buffered(PlainStream& stream) {
  boost::system::error_code error;
  return stream.available(error) == 0 || error;
}

bool no_input_buffered(TlsStream& stream) {
  SSL* ssl = stream.native_handle();
  return no_input_buffered(stream.next_layer()) && SSL_pending(ssl) == 0 &&
         BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0;
}

}  // namespace

template <typename Stream>
BasicConnection<Stream>::BasicConnection(Stream stream, ConnectionHost& host,
                                         ConnectionTimeouts timeouts)
    : stream_(std::move(stream)),
      host_(host),
      timeouts_(timeouts),
      sleep_timer_(stream_.get_executor()),
      grace_timer_(stream_.get_executor()),
      input_(kInitialInput, kMaxInput),
      last_progress_(host.now()) {}

template <typename Stream>
void BasicConnection<Stream>::start() {
  boost::system::error_code ignored;
  tcp_layer(stream_).set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  if constexpr (kIsTls<Stream>) {
    handshaking_ = true;
    stream_.async_handshake(
        boost::asio::ssl::stream_base::server,
        [self = this->shared_from_this()](const boost::system::error_code& error) {
          self->on_handshake(error);
        });
  } else {
    read_more();
  }
}

template <typename Stream>
void BasicConnection<Stream>::on_handshake(const boost::system::error_code& error) {
  handshaking_ = false;
  if (closed_) return;
  if (error) return close();  // not TLS, no common version or cipher, or the peer went away
  last_progress_ = host_.now();
  read_more();
}

// Runs when no read, write or sleep is in flight, or right after a sleep ended during a write
// (then on_write calls it). Decides the next step.
template <typename Stream>
void BasicConnection<Stream>::advance() {
  if (pending_sleep_ && !sleeping_) append_sleep_response();
  if (file_ && output_.empty()) append_file_chunk();
  if (closed_) return;
  answer_buffered_requests();
  if (!output_.empty()) return write_output();
  if (pending_sleep_) return;  // the timer calls advance() again
  if (close_after_output_) return finish();
  read_more();
}

template <typename Stream>
void BasicConnection<Stream>::answer_buffered_requests() {
  while (!close_after_output_ && !pending_sleep_ && !file_ && output_.size() < kBatchBytes) {
    http::ParseResult result = parser_.parse(input_.data());
    input_.consume(result.consumed);
    if (result.status == http::ParseStatus::need_more) return;
    if (result.status == http::ParseStatus::error) return answer_parse_error(result.error);
    answer(result.request);
  }
}

template <typename Stream>
void BasicConnection<Stream>::answer(const http::Request& request) {
  host_.on_request_started();
  ++unfinished_;
  http::ResponseContext context{host_.date(), http::persistence_for(request, host_.draining()),
                                request.method == http::Method::head};
  if (context.persistence == http::Persistence::close) close_after_output_ = true;
  Followup followup = host_.responder().respond(request, context, output_);
  if (auto* sleep = std::get_if<SleepThenRespond>(&followup)) {
    pending_sleep_ = PendingSleep{sleep->delay, context.head_only, context.persistence};
    sleeping_ = true;
    sleep_timer_.expires_after(sleep->delay);
    sleep_timer_.async_wait(
        [self = this->shared_from_this()](const boost::system::error_code& error) {
          self->on_sleep_done(error);
        });
  } else if (auto* stream = std::get_if<StreamFile>(&followup)) {
    file_ = std::move(*stream);
  } else {
    ++responses_ready_;
  }
}

template <typename Stream>
void BasicConnection<Stream>::answer_parse_error(http::ParseError error) {
  host_.on_request_started();
  ++unfinished_;
  ++responses_ready_;
  close_after_output_ = true;
  http::ResponseContext context{host_.date(), http::Persistence::close, false};
  host_.responder().respond_to_parse_error(error, context, output_);
}

template <typename Stream>
void BasicConnection<Stream>::append_sleep_response() {
  http::ResponseContext context{host_.date(), pending_sleep_->requested, pending_sleep_->head_only};
  if (host_.draining()) context.persistence = http::Persistence::close;
  if (context.persistence == http::Persistence::close) close_after_output_ = true;
  host_.responder().respond_after_sleep(pending_sleep_->delay, context, output_);
  pending_sleep_.reset();
  ++responses_ready_;
}

template <typename Stream>
void BasicConnection<Stream>::append_file_chunk() {
  std::size_t chunk =
      static_cast<std::size_t>(std::min<std::uint64_t>(file_->remaining, kFileChunk));
  if (!append_file_bytes(file_->fd.get(), chunk, output_)) return close();  // file changed
  file_->remaining -= chunk;
  if (file_->remaining == 0) {
    file_.reset();
    ++responses_ready_;
  }
}

template <typename Stream>
bool BasicConnection<Stream>::between_requests() const {
  return input_.empty() && !parser_.mid_request() && !pending_sleep_ && !file_;
}

template <typename Stream>
bool BasicConnection<Stream>::peer_sent_nothing_more() {
  return no_input_buffered(stream_);
}

template <typename Stream>
void BasicConnection<Stream>::read_more() {
  if (!lingering_ && host_.draining() && idle_after_requests()) close_if_idle_after_grace();
  std::span<char> room = input_.prepare();
  if (room.empty()) return close();  // unreachable: the parser rejects such a header block
  reading_ = true;
  stream_.async_read_some(
      boost::asio::buffer(room.data(), room.size()),
      [self = this->shared_from_this()](const boost::system::error_code& error, std::size_t bytes) {
        self->on_read(error, bytes);
      });
}

template <typename Stream>
void BasicConnection<Stream>::on_read(const boost::system::error_code& error, std::size_t bytes) {
  reading_ = false;
  if (closed_) return;
  if (shutdown_after_read_) return shut_down_tls();
  if (error) return close();  // EOF included: there is nothing left to answer
  last_progress_ = host_.now();
  received_any_ = true;
  input_.commit(bytes);
  if (lingering_) {
    input_.clear();
    return read_more();
  }
  advance();
}

template <typename Stream>
void BasicConnection<Stream>::write_output() {
  writing_ = true;
  boost::asio::async_write(
      stream_, boost::asio::buffer(output_),
      [self = this->shared_from_this()](const boost::system::error_code& error, std::size_t) {
        self->on_write(error);
      });
}

template <typename Stream>
void BasicConnection<Stream>::on_write(const boost::system::error_code& error) {
  writing_ = false;
  if (closed_) return;
  if (error) return close();
  last_progress_ = host_.now();
  if (responses_ready_ > 0) {
    host_.on_requests_finished(responses_ready_);
    unfinished_ -= responses_ready_;
    responses_ready_ = 0;
  }
  output_.clear();
  if (output_.capacity() > kKeptOutputCapacity) std::string().swap(output_);
  if (sleeping_) return;  // on_sleep_done calls advance()
  advance();
}

template <typename Stream>
void BasicConnection<Stream>::on_sleep_done(const boost::system::error_code& error) {
  sleeping_ = false;
  if (closed_ || error) return;
  if (writing_) return;  // on_write calls advance()
  advance();
}

// After the last response: close at once if the peer sent nothing more; otherwise stop sending
// and discard its input for a while, so that the peer's unread data does not make our close
// a reset that destroys the response before the peer reads it.
template <typename Stream>
void BasicConnection<Stream>::finish() {
  if constexpr (kIsTls<Stream>) return shut_down_tls();
  if (between_requests() && peer_sent_nothing_more()) return close();
  boost::system::error_code ignored;
  tcp_layer(stream_).shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  lingering_ = true;
  linger_started_ = host_.now();
  input_.clear();
  read_more();
}

// OpenSSL discards application data that arrives after our close_notify, so waiting for the
// peer's close_notify (or EOF) is the TLS form of lingering; on_tick bounds it.
template <typename Stream>
void BasicConnection<Stream>::shut_down_tls() {
  if constexpr (kIsTls<Stream>) {
    if (!lingering_) {
      lingering_ = true;
      linger_started_ = host_.now();
      input_.clear();
    }
    if (reading_) {
      shutdown_after_read_ = true;
      boost::system::error_code ignored;
      tcp_layer(stream_).cancel(ignored);
      return;
    }
    shutdown_after_read_ = false;
    stream_.async_shutdown(
        [self = this->shared_from_this()](const boost::system::error_code&) { self->close(); });
  }
}

template <typename Stream>
void BasicConnection<Stream>::close_gracefully() {
  if constexpr (kIsTls<Stream>) {
    shut_down_tls();
  } else {
    close();
  }
}

// Draining closes idle keep-alive connections after a short grace: a client that got its last
// response just before the drain may be sending its next request right now, and closing under
// it would fail that request. A connection that has not sent its first request yet is not idle
// either: it gets the draining timeout to send it. Every answer now says Connection: close.
template <typename Stream>
void BasicConnection<Stream>::on_drain() {
  if (closed_ || !reading_ || lingering_) return;
  if (idle_after_requests()) close_if_idle_after_grace();
}

template <typename Stream>
void BasicConnection<Stream>::close_if_idle_after_grace() {
  if (grace_started_) return;
  grace_started_ = true;
  grace_timer_.expires_after(timeouts_.drain_grace);
  grace_timer_.async_wait(
      [self = this->shared_from_this()](const boost::system::error_code& error) {
        if (error || self->closed_) return;
        if (self->reading_ && !self->lingering_ && self->idle_after_requests()) {
          self->close_gracefully();
        }
      });
}

template <typename Stream>
bool BasicConnection<Stream>::idle_after_requests() {
  return received_any_ && between_requests() && peer_sent_nothing_more();
}

template <typename Stream>
void BasicConnection<Stream>::on_tick(Clock::time_point now) {
  if (closed_) return;
  if (lingering_) {
    if (now - linger_started_ >= timeouts_.linger) close();
    return;
  }
  if (handshaking_) {
    if (now - last_progress_ >= timeouts_.handshake) close();
    return;
  }
  if (sleeping_) return;
  auto limit = host_.draining() ? timeouts_.draining : timeouts_.idle;
  if ((reading_ || writing_) && now - last_progress_ >= limit) close();
}

template <typename Stream>
void BasicConnection<Stream>::close() {
  if (closed_) return;
  closed_ = true;
  auto self = this->shared_from_this();  // the host drops its reference in on_closed()
  boost::system::error_code ignored;
  tcp_layer(stream_).close(ignored);
  sleep_timer_.cancel();
  grace_timer_.cancel();
  file_.reset();
  if (unfinished_ > 0) host_.on_requests_abandoned(unfinished_);
  unfinished_ = 0;
  host_.on_closed(this);
}

template class BasicConnection<PlainStream>;
template class BasicConnection<TlsStream>;

}  // namespace deployctl::server
