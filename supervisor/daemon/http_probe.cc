#include "http_probe.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <utility>

#include "clock.h"

namespace deployctl {
namespace {

using boost::asio::ip::tcp;
using boost::system::error_code;
namespace ssl = boost::asio::ssl;

// The https probe's client settings: TLS 1.2+, no certificate verification (the replica's
// certificate names the public host, not the loopback address probed; the probe checks that
// the replica completes a handshake and answers, as the http probe does without TLS).
ssl::context& probe_tls_context() {
  static ssl::context context = [] {
    ssl::context made(ssl::context::tls_client);
    made.set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    made.set_verify_mode(ssl::verify_none);
    return made;
  }();
  return context;
}

std::string host_header(const ProbeTarget& target) {
  const bool ipv6 = target.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + target.host + "]" : target.host) + ":" + std::to_string(target.port);
}

// HTTP/1.1 keeps the connection open unless a side says "Connection: close".
std::string http_request(const ProbeTarget& target, bool keep) {
  const std::string path = target.path.empty() ? "/" : target.path;
  return "GET " + path + " HTTP/1.1\r\nHost: " + host_header(target) +
         "\r\nUser-Agent: deployctl-probe\r\n" + (keep ? "" : "Connection: close\r\n") + "\r\n";
}

bool is_end_of_stream(const error_code& ec) {
  return ec == boost::asio::error::eof || ec == ssl::error::stream_truncated;
}

}  // namespace

HttpProbeConnection::Transport::Transport(boost::asio::io_context& io, bool use_tls) : socket(io) {
  if (use_tls) tls.emplace(socket, probe_tls_context());
}

HttpProbeConnection::HttpProbeConnection(boost::asio::io_context& io) : io_(io), deadline_(io) {}

// Wraps a completion handler: it does nothing once its check has finished, and fails the
// check if the connection was closed meanwhile. The wrapper holds the connection alive.
template <typename F>
auto HttpProbeConnection::guarded(F f) {
  return [self = shared_from_this(), transport = transport_, generation = generation_,
          f = std::move(f)](auto&&... args) mutable {
    if (generation != self->generation_ || !self->busy_) return;
    if (self->closed_) return self->finish(false, "probe connection closed");
    f(std::forward<decltype(args)>(args)...);
  };
}

// Calls f with the stream the request goes over: the TLS stream or the plain socket.
template <typename F>
void HttpProbeConnection::with_stream(F f) {
  if (transport_->tls) {
    f(*transport_->tls);
  } else {
    f(transport_->socket);
  }
}

void HttpProbeConnection::check(const ProbeTarget& target, const tcp::endpoint& endpoint,
                                Duration timeout, bool keep, ProbeDone done) {
  ++generation_;
  busy_ = true;
  timeout_ = timeout;
  keep_ = keep;
  done_ = std::move(done);
  if (endpoint != endpoint_ || target.tls != use_tls_) policy_.closed();  // not that connection
  endpoint_ = endpoint;
  use_tls_ = target.tls;
  request_ = http_request(target, keep);
  response_.clear();
  head_.reset();
  deadline_.expires_after(timeout_);
  deadline_.async_wait(guarded([this](error_code ec) {
    if (!ec) finish(false, "timed out after " + std::to_string(to_ms(timeout_)) + "ms");
  }));
  if (policy_.begin_check(kept_alive()) == ProbeConnectionPolicy::Start::send_on_kept) {
    return send_request();
  }
  connect();
}

void HttpProbeConnection::close() {
  closed_ = true;
  close_socket();  // a pending operation completes, aborted, on the loop: guarded finishes
  policy_.closed();
}

// The kept socket is open and silent: neither closed by the server (EOF or RST pending) nor
// holding bytes no request asked for. One non-blocking peek, no wait.
bool HttpProbeConnection::kept_alive() const {
  if (!transport_ || !transport_->socket.is_open()) return false;
  char byte;
  const ssize_t n = ::recv(transport_->socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void HttpProbeConnection::connect() {
  close_socket();
  transport_ = std::make_shared<Transport>(io_, use_tls_);
  // Kept for minutes, so close-on-exec: never inherited by an upgrade's re-exec or a helper.
  error_code open_ec;
  transport_->socket.open(endpoint_.protocol(), open_ec);
  if (open_ec) return post_failure(open_ec.message());
  ::fcntl(transport_->socket.native_handle(), F_SETFD, FD_CLOEXEC);
  transport_->socket.async_connect(
      endpoint_, guarded([this](error_code ec) {
        if (ec) return transport_failed(ec.message());
        if (!transport_->tls) return send_request();
        transport_->tls->async_handshake(
            ssl::stream_base::client, guarded([this](error_code tls_ec) {
              if (tls_ec) return transport_failed("TLS handshake failed: " + tls_ec.message());
              send_request();
            }));
      }));
}

void HttpProbeConnection::send_request() {
  with_stream([this](auto& stream) {
    boost::asio::async_write(stream, boost::asio::buffer(request_),
                             guarded([this](error_code ec, std::size_t) {
                               if (ec) return transport_failed(ec.message());
                               read_more();
                             }));
  });
}

void HttpProbeConnection::read_more() {
  with_stream([this](auto& stream) {
    stream.async_read_some(boost::asio::buffer(chunk_),
                           guarded([this](error_code ec, std::size_t n) { on_read(ec, n); }));
  });
}

// Bytes first, then the error: an answer completed by the last bytes before EOF still counts.
// response_ stays bounded: the head parser fails past kMaxResponseHead, and a body is read only
// up to kMaxProbeBody (judge() decides once the framed answer is in).
void HttpProbeConnection::on_read(const error_code& ec, std::size_t n) {
  response_.append(chunk_.data(), n);
  if (!head_) {
    HeadParse parsed = parse_response_head(response_);
    if (parsed.status == HeadStatus::error) return finish(false, parsed.error);
    if (parsed.status == HeadStatus::complete) head_ = parsed.head;
  }
  if (head_ &&
      (!reads_body(*head_) || response_.size() >= head_->head_bytes + head_->content_length)) {
    return judge();
  }
  if (is_end_of_stream(ec)) {
    return transport_failed(response_.empty() ? "connection closed without a response"
                                              : "connection closed inside the response");
  }
  if (ec) return transport_failed(ec.message());
  read_more();
}

// The answer is complete, or its body is not read: the status decides.
void HttpProbeConnection::judge() {
  const std::size_t answer = head_->head_bytes + (reads_body(*head_) ? head_->content_length : 0);
  const bool keep = policy_.answered(*head_, response_.size() > answer) && keep_;
  if (!keep) policy_.closed();
  finish(head_->status >= 200 && head_->status < 300, "HTTP " + std::to_string(head_->status));
}

// A failure found inline (no operation pending): reported on the loop, as every result is.
void HttpProbeConnection::post_failure(std::string detail) {
  boost::asio::post(io_, guarded([this, detail = std::move(detail)]() mutable {
                      finish(false, std::move(detail));
                    }));
}

void HttpProbeConnection::transport_failed(std::string detail) {
  if (policy_.transport_failed(response_.size()) ==
      ProbeConnectionPolicy::AfterFailure::reconnect) {
    return connect();  // closed while idle: not a failed check
  }
  if (!detail.empty()) {
    detail[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(detail[0])));
  }
  finish(false, std::move(detail));
}

// Ends the check: the socket stays open only if the policy keeps it for the next one.
void HttpProbeConnection::finish(bool ok, std::string detail) {
  busy_ = false;
  deadline_.cancel();
  if (!ok) policy_.closed();
  if (policy_.state() != ProbeConnectionPolicy::State::idle) close_socket();
  ProbeDone done = std::exchange(done_, nullptr);
  done({ok, std::move(detail)});
}

void HttpProbeConnection::close_socket() {
  if (!transport_) return;
  error_code ignored;
  transport_->socket.close(ignored);
  transport_.reset();
}

}  // namespace deployctl
