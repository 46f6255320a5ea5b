// Facts about PEM certificates and keys (OpenSSL): bytes in, facts out. Used by `validate`
// (config/tls_check.h) and, later, by `status`. No file access here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace deployctl {

struct CertificateFacts {
  std::string subject;  // one line, RFC 2253 order, e.g. "CN=app.example.com,O=Shop"
  std::string issuer;
  std::int64_t not_before = 0;  // Unix seconds
  std::int64_t not_after = 0;
  std::vector<std::string> dns_names;  // subjectAltName DNS entries, in order
  int chain_length = 0;                // certificates in the PEM text

  bool operator==(const CertificateFacts&) const = default;
};

// The first certificate of a PEM chain (the leaf) and how many follow it. On failure the
// string says what is wrong ("no PEM certificate in it", "not a valid certificate: ...").
std::variant<CertificateFacts, std::string> inspect_certificate(std::string_view pem);

// nullopt when the PEM private key belongs to the first certificate of cert_pem; else what is
// wrong ("not a PEM private key", "the key does not match the certificate", ...).
std::optional<std::string> key_mismatch(std::string_view cert_pem, std::string_view key_pem);

// "2026-01-31 12:00:00 UTC".
std::string format_utc(std::int64_t unix_seconds);

}  // namespace deployctl
