// The pure side of deploy-server's TLS: which files to load, which ALPN protocol to pick.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace deployctl::server {

// The certificate chain and key files one server uses, both PEM, and optionally a session
// ticket key file shared by every replica (so a client resumes on whichever replica accepts).
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string ticket_key;  // empty: each process draws its own ticket key at random
};

// A session ticket key: nginx's 80-byte format, name (16) + HMAC key (32) + AES-256 key (32).
struct TicketKey {
  std::array<unsigned char, 16> name{};
  std::array<unsigned char, 32> hmac{};
  std::array<unsigned char, 32> aes{};
};

// The key in a ticket key file's bytes; nullopt unless exactly 80 bytes.
std::optional<TicketKey> parse_ticket_key(std::string_view bytes);

// Which files to use: --tls-cert/--tls-key win over DEPLOYCTL_TLS_CERT/DEPLOYCTL_TLS_KEY
// (env_cert/env_key: nullptr when unset). nullopt without error: plain HTTP. Exactly both or
// neither must be given (per source after the flags override); else *error says which is
// missing.
std::optional<TlsFiles> resolve_tls_files(const std::optional<std::string>& flag_cert,
                                          const std::optional<std::string>& flag_key,
                                          const char* env_cert, const char* env_key,
                                          std::string* error);

// ALPN: picks "http/1.1" from the client's wire-format list (length-prefixed names). nullopt
// when it is not offered (the handshake then goes on without ALPN) or the list is malformed.
std::optional<std::string_view> select_alpn(std::span<const unsigned char> client_list);

}  // namespace deployctl::server
