#include "tls_policy.h"

#include <algorithm>

namespace deployctl::server {
namespace {

constexpr std::string_view kHttp11 = "http/1.1";

}  // namespace

std::optional<TlsFiles> resolve_tls_files(const std::optional<std::string>& flag_cert,
                                          const std::optional<std::string>& flag_key,
                                          const char* env_cert, const char* env_key,
                                          std::string* error) {
  auto pick = [](const std::optional<std::string>& flag, const char* env) {
    if (flag) return *flag;
    return env != nullptr ? std::string(env) : std::string();
  };
  TlsFiles files{pick(flag_cert, env_cert), pick(flag_key, env_key)};
  if (files.cert.empty() && files.key.empty()) return std::nullopt;
  if (files.cert.empty() || files.key.empty()) {
    *error = files.cert.empty()
                 ? "a TLS key is given but no certificate (--tls-cert or DEPLOYCTL_TLS_CERT)"
                 : "a TLS certificate is given but no key (--tls-key or DEPLOYCTL_TLS_KEY)";
    return std::nullopt;
  }
  return files;
}

std::optional<TicketKey> parse_ticket_key(std::string_view bytes) {
  TicketKey key;
  if (bytes.size() != key.name.size() + key.hmac.size() + key.aes.size()) return std::nullopt;
  auto take = [&bytes](auto& part) {
    std::copy_n(bytes.begin(), part.size(), part.begin());
    bytes.remove_prefix(part.size());
  };
  take(key.name);
  take(key.hmac);
  take(key.aes);
  return key;
}

std::optional<std::string_view> select_alpn(std::span<const unsigned char> client_list) {
  std::size_t i = 0;
  while (i < client_list.size()) {
    const std::size_t length = client_list[i];
    if (length == 0 || i + 1 + length > client_list.size()) return std::nullopt;
    std::string_view name(reinterpret_cast<const char*>(client_list.data() + i + 1), length);
    if (name == kHttp11) return kHttp11;
    i += 1 + length;
  }
  return std::nullopt;
}

}  // namespace deployctl::server
