#include "listen_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace deployctl {
namespace {

std::optional<std::uint16_t> parse_port(std::string_view digits, std::uint16_t min_port) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < min_port || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// The canonical text of a numeric address of the given family, or nullopt.
std::optional<std::string> canonical_host(int family, const std::string& host) {
  unsigned char bytes[sizeof(in6_addr)];
  if (inet_pton(family, host.c_str(), bytes) != 1) return std::nullopt;
  char text[INET6_ADDRSTRLEN];
  if (!inet_ntop(family, bytes, text, sizeof text)) return std::nullopt;
  return std::string(text);
}

std::optional<std::string> parse_host(std::string_view host) {
  if (host == "localhost") return std::string("127.0.0.1");
  if (host.find('\0') != std::string_view::npos) return std::nullopt;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return canonical_host(AF_INET6, std::string(host.substr(1, host.size() - 2)));
  }
  return canonical_host(AF_INET, std::string(host));
}

}  // namespace

std::optional<ListenAddress> parse_listen_address(std::string_view text, std::uint16_t min_port,
                                                  std::string* reason) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    *reason = "expected HOST:PORT such as \"127.0.0.1:8000\" or \"[::1]:8000\"";
    return std::nullopt;
  }
  const std::optional<std::uint16_t> port = parse_port(text.substr(colon + 1), min_port);
  if (!port) {
    *reason = "the port must be a number from " + std::to_string(min_port) + " to 65535";
    return std::nullopt;
  }
  const std::optional<std::string> host = parse_host(text.substr(0, colon));
  if (!host) {
    *reason =
        "the host must be a numeric IPv4 address, an IPv6 address in brackets such as "
        "[::1], or localhost";
    return std::nullopt;
  }
  return ListenAddress{*host, *port, std::string(text)};
}

}  // namespace deployctl
