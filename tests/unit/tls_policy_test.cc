// deploy-server's pure TLS decisions: which files to load, which ALPN protocol to pick, and
// the TLS flags of the command line.
#include "tls_policy.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "server_options.h"

using namespace deployctl::server;

namespace {

std::vector<unsigned char> wire(std::vector<std::string_view> names) {
  std::vector<unsigned char> out;
  for (auto name : names) {
    out.push_back(static_cast<unsigned char>(name.size()));
    out.insert(out.end(), name.begin(), name.end());
  }
  return out;
}

}  // namespace

TEST_CASE("tls: flags win over the environment; both files or neither") {
  std::string error;
  CHECK_FALSE(resolve_tls_files(std::nullopt, std::nullopt, nullptr, nullptr, &error));
  CHECK(error.empty());

  auto from_env = resolve_tls_files(std::nullopt, std::nullopt, "/e.pem", "/e.key", &error);
  REQUIRE(from_env);
  CHECK(from_env->cert == "/e.pem");
  CHECK(from_env->key == "/e.key");

  auto mixed = resolve_tls_files(std::string("/f.pem"), std::nullopt, "/e.pem", "/e.key", &error);
  REQUIRE(mixed);
  CHECK(mixed->cert == "/f.pem");
  CHECK(mixed->key == "/e.key");

  CHECK_FALSE(resolve_tls_files(std::nullopt, std::nullopt, "/e.pem", "", &error));
  CHECK(error.find("no key") != std::string::npos);
  error.clear();
  CHECK_FALSE(resolve_tls_files(std::nullopt, std::string("/k"), nullptr, nullptr, &error));
  CHECK(error.find("no certificate") != std::string::npos);
}

TEST_CASE("tls: ALPN picks http/1.1 wherever it is offered, else nothing") {
  auto pick = [](std::vector<std::string_view> names) {
    auto list = wire(names);
    return select_alpn(list);
  };
  CHECK(pick({"h2", "http/1.1"}) == "http/1.1");
  CHECK(pick({"http/1.1"}) == "http/1.1");
  CHECK_FALSE(pick({"h2"}));
  CHECK_FALSE(pick({}));
  CHECK_FALSE(pick({"http/1.0", "spdy/3"}));

  std::vector<unsigned char> truncated = wire({"h2", "http/1.1"});
  truncated.pop_back();
  CHECK_FALSE(select_alpn(truncated));
  std::vector<unsigned char> zero_length = {0, 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  CHECK_FALSE(select_alpn(zero_length));
}

TEST_CASE("tls: --tls-cert, --tls-key and --handshake-timeout") {
  auto parse = [](std::vector<std::string_view> args) { return parse_options(args); };
  OptionsResult plain = parse({});
  CHECK_FALSE(plain.options.tls_cert);
  CHECK(plain.options.handshake_timeout_seconds == 10);

  OptionsResult tls =
      parse({"--tls-cert", "/c.pem", "--tls-key=/k.pem", "--handshake-timeout", "3"});
  REQUIRE(tls.error.empty());
  CHECK(tls.options.tls_cert == "/c.pem");
  CHECK(tls.options.tls_key == "/k.pem");
  CHECK(tls.options.handshake_timeout_seconds == 3);

  CHECK(parse({"--tls-cert"}).error == "--tls-cert needs a value");
  CHECK(parse({"--tls-key="}).error == "--tls-key needs a file");
  CHECK(parse({"--handshake-timeout", "0"}).error.find("1 to 600") != std::string::npos);
}

TEST_CASE("tls: a session ticket key file is exactly 80 bytes: name, HMAC key, AES key") {
  std::string bytes;
  for (int i = 0; i < 80; ++i) bytes.push_back(static_cast<char>(i));
  auto key = parse_ticket_key(bytes);
  REQUIRE(key);
  CHECK(key->name[0] == 0);
  CHECK(key->name[15] == 15);
  CHECK(key->hmac[0] == 16);
  CHECK(key->hmac[31] == 47);
  CHECK(key->aes[0] == 48);
  CHECK(key->aes[31] == 79);
  CHECK_FALSE(parse_ticket_key(bytes.substr(1)));
  CHECK_FALSE(parse_ticket_key(bytes + "x"));
  CHECK_FALSE(parse_ticket_key(""));
}
