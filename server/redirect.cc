#include "redirect.h"

#include "ascii.h"

namespace deployctl::http {
namespace {

// Letters, digits, '-', '.', and an IPv6 literal's brackets and colons: nothing that could
// change the meaning of the Location it is put in.
bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.' ||
         c == '[' || c == ']' || c == ':';
}

// The host of a Host field value, without its port; nullopt if malformed.
std::optional<std::string_view> host_without_port(std::string_view value) {
  if (value.empty()) return std::nullopt;
  for (char c : value) {
    if (!is_host_char(c)) return std::nullopt;
  }
  if (value.front() == '[') {  // [IPv6]:port
    const std::size_t close = value.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = value.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::nullopt;
    return value.substr(0, close + 1);
  }
  const std::size_t colon = value.find(':');
  if (colon == 0) return std::nullopt;
  if (colon != std::string_view::npos && value.find(':', colon + 1) != std::string_view::npos) {
    return std::nullopt;  // a bare IPv6 address is not a valid Host
  }
  return value.substr(0, colon);
}

}  // namespace

std::optional<std::string> https_location(const Request& request, int https_port) {
  std::optional<std::string_view> host;
  for (const Header& header : request.headers) {
    if (!equals_ignoring_case(header.name, "host")) continue;
    if (host) return std::nullopt;  // repeated
    host = host_without_port(header.value);
    if (!host) return std::nullopt;
  }
  if (!host || request.path.empty() || request.path.front() != '/') return std::nullopt;
  std::string location = "https://" + std::string(*host);
  if (https_port != 443) location += ":" + std::to_string(https_port);
  location += request.path;
  if (!request.query.empty()) location += "?" + std::string(request.query);
  return location;
}

}  // namespace deployctl::http
