// The one listen-address parser (config/listen_address.h), shared by deploy.toml and
// deploy-server --listen; they differ only in the lowest port allowed.
#include "listen_address.h"

#include <doctest/doctest.h>

using deployctl::parse_listen_address;

namespace {

std::string reason_for(std::string_view text, std::uint16_t min_port) {
  std::string reason;
  CHECK_FALSE(parse_listen_address(text, min_port, &reason));
  return reason;
}

}  // namespace

TEST_CASE("listen address: hosts are numeric IPv4, bracketed IPv6 or localhost, canonical") {
  std::string reason;
  auto v4 = parse_listen_address("127.0.0.1:8000", 1, &reason);
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 8000);
  CHECK(v4->text == "127.0.0.1:8000");
  CHECK(parse_listen_address("localhost:80", 1, &reason)->host == "127.0.0.1");
  CHECK(parse_listen_address("[::1]:80", 1, &reason)->host == "::1");
  CHECK(parse_listen_address("[0:0::0001]:80", 1, &reason)->host == "::1");  // canonical
  CHECK(*parse_listen_address("[::1]:80", 1, &reason) !=
        *parse_listen_address("[0::1]:80", 1, &reason));  // text differs
  for (auto text : {"example.com:80", "::1:80", "[127.0.0.1]:80", "[::1:80", ":80", "1.2.3:80",
                    "127.0.0.1 :80"}) {
    INFO(text);
    CHECK(reason_for(text, 1).find("numeric IPv4") != std::string::npos);
  }
  CHECK(reason_for(std::string_view("127.0.0.1\0:80", 13), 1).find("host") != std::string::npos);
}

TEST_CASE("listen address: ports are 1-5 digits in [min_port, 65535]") {
  std::string reason;
  CHECK(parse_listen_address("127.0.0.1:65535", 1, &reason)->port == 65535);
  CHECK(parse_listen_address("127.0.0.1:1", 1, &reason)->port == 1);
  CHECK(parse_listen_address("127.0.0.1:00080", 1, &reason)->port == 80);
  CHECK(reason_for("127.0.0.1:0", 1) == "the port must be a number from 1 to 65535");
  CHECK(parse_listen_address("127.0.0.1:0", 0, &reason)->port == 0);  // deploy-server's rule
  for (auto text : {"127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:+80", "127.0.0.1:-1",
                    "127.0.0.1:8o", "127.0.0.1:000080", "127.0.0.1:99999999999999999999"}) {
    INFO(text);
    CHECK(reason_for(text, 0) == "the port must be a number from 0 to 65535");
  }
  CHECK(reason_for("127.0.0.1", 1).find("expected HOST:PORT") != std::string::npos);
}
