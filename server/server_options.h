// deploy-server's command line. Pure: parsing never touches the system.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "listen_address.h"

namespace deployctl::server {

using deployctl::ListenAddress;  // config/listen_address.h

inline constexpr std::string_view kDefaultListen = "127.0.0.1:8000";

struct Options {
  std::vector<ListenAddress> listen;  // never empty after a successful parse
  std::optional<std::string> root;    // --root: document root for static files
  bool debug_endpoints = false;       // --debug-endpoints: GET /sleep/<ms>
  std::uint64_t leak_per_request = 0; // --debug-leak-per-request BYTES: test-only memory leak
  int idle_timeout_seconds = 60;      // --idle-timeout: close idle keep-alive connections
  int drain_grace_ms = 250;           // --drain-grace: idle keep-alive time left when draining
  std::optional<std::string> tls_cert;  // --tls-cert: PEM chain (else DEPLOYCTL_TLS_CERT)
  std::optional<std::string> tls_key;   // --tls-key: PEM key (else DEPLOYCTL_TLS_KEY)
  int handshake_timeout_seconds = 10;   // --handshake-timeout: TLS handshake time limit
  std::optional<int> redirect_https_port;  // --redirect-https PORT: the HTTP-01 listener
  bool help = false;
  bool version = false;
};

struct OptionsResult {
  Options options;
  std::string error;  // non-empty: a usage error, already phrased for stderr
};

// `args` excludes the program name.
OptionsResult parse_options(std::span<const std::string_view> args);

// --listen's value: "HOST:PORT" with HOST a numeric IPv4 address, "[IPv6]" or "localhost"
// (= 127.0.0.1) and PORT 0 (any free port) to 65535; the error names the flag.
std::optional<ListenAddress> parse_listen_flag(std::string_view text, std::string* error);

std::string usage_text();

}  // namespace deployctl::server
