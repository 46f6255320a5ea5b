// "HOST:PORT" listen addresses: the one parser behind deploy.toml's `listen` (config/) and
// deploy-server's --listen (server/). Pure: parses text only. Its own tiny CMake target
// (deploy_listen_address) so deploy-server need not link the spec loader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace deployctl {

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 literal, without brackets, in canonical form
  std::uint16_t port = 0;
  std::string text;  // as written, e.g. "127.0.0.1:8000"

  bool operator==(const ListenAddress&) const = default;
};

// "127.0.0.1:8000", "[::1]:8000", "localhost:8000" (= 127.0.0.1). HOST is stored in canonical
// numeric form so equal addresses compare equal. PORT is 1 to 5 decimal digits in
// [min_port, 65535]: a spec asks for min_port 1 (the supervisor binds once and every replica
// shares the socket, so the port must be the one written), deploy-server allows 0 (any free
// port). On failure returns nullopt and sets *reason to why, without the address (callers add
// where it came from).
std::optional<ListenAddress> parse_listen_address(std::string_view text, std::uint16_t min_port,
                                                  std::string* reason);

}  // namespace deployctl
