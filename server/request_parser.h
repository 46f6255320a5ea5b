// An incremental, I/O-free HTTP/1.x request parser (RFC 9112 framing, server side).
//
// The caller owns the bytes. Each parse() call gets every received byte not yet consumed,
// starting at the first unconsumed one; bytes passed before must be passed again unchanged
// (more may follow them). parse() reports how many bytes it consumed; the caller drops exactly
// those. A returned Request views the input and is valid until the caller next changes it.
//
// A request is returned as soon as its header block is complete. Its body (Content-Length
// only) is consumed and discarded by the following parse() calls, before the next request.
// Leading empty lines before a request line are skipped; bare LF line ends are accepted.
// After an error the parser stays failed: the connection must answer and close.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace deployctl::http {

enum class Method : std::uint8_t { get, head, other };

struct Header {
  std::string_view name;   // as sent (case preserved)
  std::string_view value;  // without surrounding whitespace
};

struct Request {
  Method method = Method::other;
  std::string_view method_name;
  std::string_view target;  // the request-target as sent
  std::string_view path;    // target without query; absolute-form reduced to its path
  std::string_view query;   // after '?', without it; empty if none
  int minor_version = 1;    // HTTP/1.<minor_version>
  bool keep_alive = true;   // the client allows a persistent connection (version defaults applied)
  bool expects_continue = false;     // "Expect: 100-continue"
  std::uint64_t content_length = 0;  // body bytes the parser will discard
  std::span<const Header> headers;   // in order; views into the parser and the input
};

// The parse failures; each maps to the status the server answers with before closing.
enum class ParseError : std::uint8_t {
  none,
  bad_request,            // 400: malformed syntax or framing
  header_too_large,       // 431: header block or header count over the limits
  not_implemented,        // 501: Transfer-Encoding (chunked bodies are not supported)
  version_not_supported,  // 505: HTTP major version other than 1
};

int status_code(ParseError error);

enum class ParseStatus : std::uint8_t { need_more, request, error };

struct ParseResult {
  ParseStatus status = ParseStatus::need_more;
  std::size_t consumed = 0;  // bytes of the input the caller must now drop
  Request request;           // status == request only
  ParseError error = ParseError::none;
  std::string_view detail;  // status == error: what was wrong (static text, for logs)
};

struct ParserLimits {
  std::size_t max_header_bytes = 16 * 1024;  // request line + header lines + blank line
  std::size_t max_headers = 100;
};

// Whether the connection may stay open after answering `request` without reading its body
// first: false when the client waits for "100 Continue" before sending a body.
bool body_framing_allows_reuse(const Request& request);

class RequestParser {
 public:
  static constexpr std::size_t kMaxHeadersCapacity = 100;

  // limits.max_headers is capped at kMaxHeadersCapacity.
  explicit RequestParser(ParserLimits limits = {});

  ParseResult parse(std::string_view input);

  // True while a body is being discarded or a header block is partly received.
  bool mid_request() const { return body_remaining_ > 0 || scanned_ > 0; }
  bool failed() const { return failed_.status == ParseStatus::error; }

 private:
  ParseResult parse_header_block(std::string_view input, std::size_t already_consumed);
  ParseResult parse_complete_block(std::string_view block);
  ParseResult fail(ParseError error, std::string_view detail);

  ParserLimits limits_;
  std::uint64_t body_remaining_ = 0;
  std::size_t scanned_ = 0;     // bytes of the pending header block searched for its end
  std::size_t line_start_ = 0;  // start of the line being scanned, within the header block
  ParseResult failed_;
  std::array<Header, kMaxHeadersCapacity> headers_{};
};

}  // namespace deployctl::http
