// The pure half of the `http` health probe's kept-open connection (HTTP/1.1 keep-alive, one
// connection per replica, reused across its checks as load balancers do): the response head
// parser, and the state machine that decides "reuse, reconnect or fail". The sockets are in
// supervisor/daemon/http_probe.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace deployctl {

// The status code of an HTTP/1.x status line ("HTTP/1.1 204 No Content"), or nullopt.
// A trailing CR or CRLF is allowed.
std::optional<int> parse_status_line(std::string_view line);

// At most `limit` bytes of `raw`, anything unprintable shown as '?', for a check's detail.
std::string printable_prefix(std::string_view raw, std::size_t limit = 60);

// How the body after a response head ends (RFC 9112 section 6.3, for the answer to a GET).
enum class BodyFraming {
  none,         // 1xx, 204, 304: no body
  length,       // Content-Length bytes
  chunked,      // Transfer-Encoding ending in chunked (not decoded by the probe)
  until_close,  // neither: the body ends when the server closes
};

struct ResponseHead {
  int status = 0;
  int minor_version = 1;   // HTTP/1.<minor_version>
  bool keep_alive = true;  // HTTP/1.1 without "Connection: close", or 1.0 with keep-alive
  BodyFraming body = BodyFraming::none;
  std::uint64_t content_length = 0;  // body == length
  std::size_t head_bytes = 0;        // the status line through the empty line
};

enum class HeadStatus { need_more, complete, error };

struct HeadParse {
  HeadStatus status = HeadStatus::need_more;
  ResponseHead head;  // complete only
  std::string error;  // error only: what was wrong, for the check's detail
};

constexpr std::size_t kMaxResponseHead = 16 * 1024;  // as the request parser's header limit
constexpr std::size_t kMaxResponseHeaders = 100;
constexpr std::size_t kMaxProbeBody = 64 * 1024;  // a longer body is not read: no reuse

// Parses the response head at the start of `bytes` (everything received so far on a request).
// need_more until the empty line ends the head; error for a malformed status line or header
// line, more than kMaxResponseHeaders headers, a head longer than `max_head` bytes, or a
// Content-Length that is not a number (or two that disagree). Bare LF line ends are accepted.
HeadParse parse_response_head(std::string_view bytes, std::size_t max_head = kMaxResponseHead);

// One replica's probe connection, as a state machine (no I/O, no clock): the daemon asks it
// what to do at each step of a check and reports what happened.
//
//   none --begin_check--> fresh --answered(keep)--> idle --begin_check(alive)--> reused
//   reused --transport_failed(0 bytes)--> fresh   (closed while idle: reconnect and send again)
//   fresh/reused --transport_failed(some bytes) / timed_out / answered(no keep)--> none
//
// A server may close a kept connection whenever it is idle (uvicorn after 5 s, by default):
// that is not a failed check. A connection that fails after the request was sent on a fresh
// connection, or after part of an answer arrived, is.
class ProbeConnectionPolicy {
 public:
  enum class State { none, idle, fresh, reused };
  enum class Start { send_on_kept, connect };
  enum class AfterFailure { reconnect, fail };

  // A check begins. `kept_alive`: the kept connection (if any) was seen open and silent just
  // now (a closed or readable idle socket is not reused). Returns how to send the request.
  Start begin_check(bool kept_alive);

  // The connection failed (connect/handshake/write error, reset, EOF) after `response_bytes`
  // of the answer arrived. reconnect at most once per check, only for a reused connection
  // that died before any answer: the daemon closes it and connects anew.
  AfterFailure transport_failed(std::size_t response_bytes);

  // A complete answer arrived (`leftover`: bytes after it, which no request asked for).
  // Returns whether the connection is kept for the next check.
  bool answered(const ResponseHead& head, bool leftover);

  // The check timed out, or the replica stopped: the connection is closed.
  void closed() { state_ = State::none; }

  State state() const { return state_; }

 private:
  State state_ = State::none;
};

// Whether the body of `head` is read before the verdict, so that the connection can be reused:
// a Content-Length body of at most kMaxProbeBody bytes, or no body. Otherwise the status alone
// decides and the connection is closed.
bool reads_body(const ResponseHead& head);

}  // namespace deployctl
