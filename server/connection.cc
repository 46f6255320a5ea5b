#include "connection.h"

#include <boost/asio/write.hpp>
#include <utility>

namespace deployctl::server {
namespace {

constexpr std::size_t kInitialInput = 4 * 1024;
constexpr std::size_t kMaxInput = 20 * 1024;    // more than the parser's header block limit
constexpr std::size_t kBatchBytes = 64 * 1024;  // stop answering pipelined requests here
constexpr std::size_t kFileChunk = 64 * 1024;
constexpr std::size_t kKeptOutputCapacity = 256 * 1024;

}  // namespace

Connection::Connection(boost::asio::ip::tcp::socket socket, ConnectionHost& host,
                       ConnectionTimeouts timeouts)
    : socket_(std::move(socket)),
      host_(host),
      timeouts_(timeouts),
      sleep_timer_(socket_.get_executor()),
      grace_timer_(socket_.get_executor()),
      input_(kInitialInput, kMaxInput),
      last_progress_(host.now()) {}

void Connection::start() {
  boost::system::error_code ignored;
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  read_more();
}

// Runs when no read, write or sleep is in flight, or right after a sleep ended during a write
// (then on_write calls it). Decides the next step.
void Connection::advance() {
  if (pending_sleep_ && !sleeping_) append_sleep_response();
  if (file_ && output_.empty()) append_file_chunk();
  if (closed_) return;
  answer_buffered_requests();
  if (!output_.empty()) return write_output();
  if (pending_sleep_) return;  // the timer calls advance() again
  if (close_after_output_) return finish();
  read_more();
}

void Connection::answer_buffered_requests() {
  while (!close_after_output_ && !pending_sleep_ && !file_ && output_.size() < kBatchBytes) {
    http::ParseResult result = parser_.parse(input_.data());
    input_.consume(result.consumed);
    if (result.status == http::ParseStatus::need_more) return;
    if (result.status == http::ParseStatus::error) return answer_parse_error(result.error);
    answer(result.request);
  }
}

void Connection::answer(const http::Request& request) {
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
    sleep_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      self->on_sleep_done(error);
    });
  } else if (auto* stream = std::get_if<StreamFile>(&followup)) {
    file_ = std::move(*stream);
  } else {
    ++responses_ready_;
  }
}

void Connection::answer_parse_error(http::ParseError error) {
  host_.on_request_started();
  ++unfinished_;
  ++responses_ready_;
  close_after_output_ = true;
  http::ResponseContext context{host_.date(), http::Persistence::close, false};
  host_.responder().respond_to_parse_error(error, context, output_);
}

void Connection::append_sleep_response() {
  http::ResponseContext context{host_.date(), pending_sleep_->requested, pending_sleep_->head_only};
  if (host_.draining()) context.persistence = http::Persistence::close;
  if (context.persistence == http::Persistence::close) close_after_output_ = true;
  host_.responder().respond_after_sleep(pending_sleep_->delay, context, output_);
  pending_sleep_.reset();
  ++responses_ready_;
}

void Connection::append_file_chunk() {
  std::size_t chunk =
      static_cast<std::size_t>(std::min<std::uint64_t>(file_->remaining, kFileChunk));
  if (!append_file_bytes(file_->fd.get(), chunk, output_)) return close();  // file changed
  file_->remaining -= chunk;
  if (file_->remaining == 0) {
    file_.reset();
    ++responses_ready_;
  }
}

bool Connection::between_requests() const {
  return input_.empty() && !parser_.mid_request() && !pending_sleep_ && !file_;
}

bool Connection::peer_sent_nothing_more() {
  boost::system::error_code error;
  return socket_.available(error) == 0 || error;
}

void Connection::read_more() {
  if (!lingering_ && host_.draining() && idle_after_requests()) close_if_idle_after_grace();
  std::span<char> room = input_.prepare();
  if (room.empty()) return close();  // unreachable: the parser rejects such a header block
  reading_ = true;
  socket_.async_read_some(
      boost::asio::buffer(room.data(), room.size()),
      [self = shared_from_this()](const boost::system::error_code& error, std::size_t bytes) {
        self->on_read(error, bytes);
      });
}

void Connection::on_read(const boost::system::error_code& error, std::size_t bytes) {
  reading_ = false;
  if (closed_) return;
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

void Connection::write_output() {
  writing_ = true;
  boost::asio::async_write(socket_, boost::asio::buffer(output_),
                           [self = shared_from_this()](const boost::system::error_code& error,
                                                       std::size_t) { self->on_write(error); });
}

void Connection::on_write(const boost::system::error_code& error) {
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

void Connection::on_sleep_done(const boost::system::error_code& error) {
  sleeping_ = false;
  if (closed_ || error) return;
  if (writing_) return;  // on_write calls advance()
  advance();
}

// After the last response: close at once if the peer sent nothing more; otherwise stop sending
// and discard its input for a while, so that the peer's unread data does not make our close
// a reset that destroys the response before the peer reads it.
void Connection::finish() {
  if (between_requests() && peer_sent_nothing_more()) return close();
  boost::system::error_code ignored;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  lingering_ = true;
  linger_started_ = host_.now();
  input_.clear();
  read_more();
}

// Draining closes idle keep-alive connections after a short grace: a client that got its last
// response just before the drain may be sending its next request right now, and closing under
// it would fail that request. A connection that has not sent its first request yet is not idle
// either: it gets the draining timeout to send it. Every answer now says Connection: close.
void Connection::on_drain() {
  if (closed_ || !reading_ || lingering_) return;
  if (idle_after_requests()) close_if_idle_after_grace();
}

void Connection::close_if_idle_after_grace() {
  if (grace_started_) return;
  grace_started_ = true;
  grace_timer_.expires_after(timeouts_.drain_grace);
  grace_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
    if (error || self->closed_) return;
    if (self->reading_ && !self->lingering_ && self->idle_after_requests()) self->close();
  });
}

bool Connection::idle_after_requests() {
  return received_any_ && between_requests() && peer_sent_nothing_more();
}

void Connection::on_tick(Clock::time_point now) {
  if (closed_) return;
  if (lingering_) {
    if (now - linger_started_ >= timeouts_.linger) close();
    return;
  }
  if (sleeping_) return;
  auto limit = host_.draining() ? timeouts_.draining : timeouts_.idle;
  if ((reading_ || writing_) && now - last_progress_ >= limit) close();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();  // the host drops its reference in on_closed()
  boost::system::error_code ignored;
  socket_.close(ignored);
  sleep_timer_.cancel();
  grace_timer_.cancel();
  file_.reset();
  if (unfinished_ > 0) host_.on_requests_abandoned(unfinished_);
  unfinished_ = 0;
  host_.on_closed(this);
}

}  // namespace deployctl::server
