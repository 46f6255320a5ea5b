#include "tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace deployctl::server {
namespace {

// TLS 1.2 suites with forward secrecy and AEAD (TLS 1.3 keeps OpenSSL's defaults, all AEAD).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr unsigned char kSessionContext[] = "deploy-server";
constexpr long kSessionCacheSize = 20480;
constexpr long kSessionTimeoutSeconds = 3600;

// The first queued OpenSSL error as text, or fallback; clears the queue.
std::string openssl_reason(std::string_view fallback) {
  const char* reason = ERR_reason_error_string(ERR_peek_last_error());
  std::string text = reason != nullptr ? reason : std::string(fallback);
  ERR_clear_error();
  return text;
}

int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
            unsigned int inlen, void*) {
  auto chosen = select_alpn({in, inlen});
  if (!chosen) return SSL_TLSEXT_ERR_NOACK;
  *out = reinterpret_cast<const unsigned char*>(chosen->data());
  *outlen = static_cast<unsigned char>(chosen->size());
  return SSL_TLSEXT_ERR_OK;
}

// Why path cannot be opened for reading, or "" if it can.
std::string unreadable(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return std::strerror(errno);
  std::fclose(file);
  return "";
}

bool key_mismatch() { return ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH; }

// The shared ticket key, when one is configured. One TLS context per process, so one key.
std::optional<TicketKey>& shared_ticket_key() {
  static std::optional<TicketKey> key;
  return key;
}

// OpenSSL's ticket callback: encrypts new tickets with the shared key; decrypts only tickets
// made with it (others: a full handshake, then a new ticket).
int on_ticket(SSL*, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
              EVP_MAC_CTX* mac, int encrypt) {
  TicketKey& key = *shared_ticket_key();
  if (encrypt) {
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::copy(key.name.begin(), key.name.end(), name);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) {
      return -1;
    }
  } else {
    if (!std::equal(key.name.begin(), key.name.end(), name)) return 0;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) {
      return -1;
    }
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  return 1;
}

bool use_ticket_key(SSL_CTX* ctx, const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  shared_ticket_key() = parse_ticket_key(bytes);  // configure() checked it is readable
  if (!shared_ticket_key()) {
    *error = "tls: " + path + ": a session ticket key file holds exactly 80 bytes (got " +
             std::to_string(bytes.size()) + ")";
    return false;
  }
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
  return true;
}

bool configure(SSL_CTX* ctx, const TlsFiles& files, std::string* error) {
  auto fail = [&](const std::string& file, std::string_view what) {
    *error = "tls: " + file + ": " + std::string(what) + " (" + openssl_reason("failed") + ")";
    return false;
  };
  for (const std::string& file : {files.cert, files.key, files.ticket_key}) {
    if (file.empty()) continue;
    if (auto why = unreadable(file); !why.empty()) {
      *error = "tls: " + file + ": cannot read: " + why;
      return false;
    }
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return fail("(ciphers)", "cipher list");
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) {
    return fail(files.cert, "not a PEM certificate chain");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (key_mismatch()) return fail(files.key, "the key does not belong to " + files.cert);
    return fail(files.key, "not a PEM private key");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail(files.key, "the key does not belong to the certificate " + files.cert);
  }
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  // Resumption: a server-side session cache (session IDs) and stateless tickets, whose keys
  // OpenSSL draws at random per process.
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, kSessionCacheSize);
  SSL_CTX_set_timeout(ctx, kSessionTimeoutSeconds);
  return files.ticket_key.empty() || use_ticket_key(ctx, files.ticket_key, error);
}

}  // namespace

std::unique_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles& files,
                                                            std::string* error) {
  auto context = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  if (!configure(context->native_handle(), files, error)) return nullptr;
  return context;
}

}  // namespace deployctl::server
