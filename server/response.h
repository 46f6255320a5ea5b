// Serialising HTTP/1.1 responses into a caller-owned buffer. Pure, and allocation-free once the
// buffer has grown: FixedResponse precomputes everything but the Date and Connection fields.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "request_parser.h"

namespace deployctl::http {

inline constexpr std::string_view kServerName = "deploy-server";

// What the response says about the connection, and what the server does after sending it.
enum class Persistence : std::uint8_t {
  keep_alive,         // HTTP/1.1 default: no Connection field
  keep_alive_http10,  // "Connection: keep-alive", which an HTTP/1.0 client must see
  close,              // "Connection: close"; the server closes after this response
};

// The connection stays open only if the client allows it, the body framing allows it
// (see body_framing_allows_reuse) and the server does not `insist_on_close` (e.g. draining).
Persistence persistence_for(const Request& request, bool insist_on_close);

struct ResponseContext {
  std::string_view date;  // an IMF-fixdate (http_date.h)
  Persistence persistence = Persistence::keep_alive;
  bool head_only = false;  // HEAD: the same header fields as GET, no body
};

std::string_view reason_phrase(int status);

// Appends a status line and header block announcing a body of `content_length` bytes; the
// caller appends the body. `extra_fields` is zero or more complete "Name: value\r\n" lines.
void append_head(std::string& out, int status, std::string_view content_type,
                 std::uint64_t content_length, std::string_view extra_fields,
                 const ResponseContext& context);

// A response whose status, header fields and body are known at startup.
class FixedResponse {
 public:
  FixedResponse(int status, std::string_view content_type, std::string body,
                std::string_view extra_fields = {});

  void append_to(std::string& out, const ResponseContext& context) const;

  int status() const { return status_; }
  std::string_view body() const { return body_; }

 private:
  int status_;
  std::string head_;  // status line through Content-Length and the extra fields
  std::string body_;
};

}  // namespace deployctl::http
