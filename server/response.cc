#include "response.h"

#include <charconv>

namespace deployctl::http {
namespace {

std::string_view connection_field(Persistence persistence) {
  switch (persistence) {
    case Persistence::keep_alive:
      return {};
    case Persistence::keep_alive_http10:
      return "Connection: keep-alive\r\n";
    case Persistence::close:
      return "Connection: close\r\n";
  }
  return {};
}

void append_number(std::string& out, std::uint64_t value) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

void append_status_through_length(std::string& out, int status, std::string_view content_type,
                                  std::uint64_t content_length) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<std::uint64_t>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\nServer: ");
  out.append(kServerName);
  if (!content_type.empty()) {
    out.append("\r\nContent-Type: ");
    out.append(content_type);
  }
  out.append("\r\nContent-Length: ");
  append_number(out, content_length);
  out.append("\r\n");
}

void append_connection_and_date(std::string& out, const ResponseContext& context) {
  out.append(connection_field(context.persistence));
  out.append("Date: ");
  out.append(context.date);
  out.append("\r\n\r\n");
}

}  // namespace

Persistence persistence_for(const Request& request, bool insist_on_close) {
  if (!request.keep_alive || insist_on_close || !body_framing_allows_reuse(request)) {
    return Persistence::close;
  }
  return request.minor_version == 0 ? Persistence::keep_alive_http10 : Persistence::keep_alive;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
  }
  return "Unknown";
}

void append_head(std::string& out, int status, std::string_view content_type,
                 std::uint64_t content_length, std::string_view extra_fields,
                 const ResponseContext& context) {
  append_status_through_length(out, status, content_type, content_length);
  out.append(extra_fields);
  append_connection_and_date(out, context);
}

FixedResponse::FixedResponse(int status, std::string_view content_type, std::string body,
                             std::string_view extra_fields)
    : status_(status), body_(std::move(body)) {
  append_status_through_length(head_, status, content_type, body_.size());
  head_.append(extra_fields);
}

void FixedResponse::append_to(std::string& out, const ResponseContext& context) const {
  out.append(head_);
  append_connection_and_date(out, context);
  if (!context.head_only) out.append(body_);
}

}  // namespace deployctl::http
