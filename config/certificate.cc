#include "certificate.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

namespace deployctl {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* pointer) const {
    Free(pointer);
  }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;

Bio memory_bio(std::string_view bytes) {
  return Bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

Cert read_certificate(BIO* bio) { return Cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)); }

// Why OpenSSL failed last, as its reason text; clears the error queue.
std::string openssl_reason() {
  const char* reason = ERR_reason_error_string(ERR_peek_last_error());
  std::string text = reason != nullptr ? reason : "unknown error";
  ERR_clear_error();
  return text;
}

std::string name_text(const X509_NAME* name) {
  Bio out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long size = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::int64_t unix_time(const ASN1_TIME* time) {
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&parts));
}

std::vector<std::string> dns_names(X509* cert) {
  std::vector<std::string> out;
  Names names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* text = name->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                     static_cast<std::size_t>(ASN1_STRING_length(text)));
  }
  return out;
}

bool has_pem_block(std::string_view pem, std::string_view label) {
  return pem.find("-----BEGIN " + std::string(label)) != std::string_view::npos;
}

}  // namespace

std::variant<CertificateFacts, std::string> inspect_certificate(std::string_view pem) {
  if (!has_pem_block(pem, "CERTIFICATE-----")) return std::string("no PEM certificate in it");
  Bio bio = memory_bio(pem);
  Cert leaf = read_certificate(bio.get());
  if (!leaf) return "not a valid PEM certificate (" + openssl_reason() + ")";
  CertificateFacts facts;
  facts.subject = name_text(X509_get_subject_name(leaf.get()));
  facts.issuer = name_text(X509_get_issuer_name(leaf.get()));
  facts.not_before = unix_time(X509_get0_notBefore(leaf.get()));
  facts.not_after = unix_time(X509_get0_notAfter(leaf.get()));
  facts.dns_names = dns_names(leaf.get());
  facts.chain_length = 1;
  while (Cert next = read_certificate(bio.get())) ++facts.chain_length;
  ERR_clear_error();  // the end of the chain reads as an error
  return facts;
}

std::optional<std::string> key_mismatch(std::string_view cert_pem, std::string_view key_pem) {
  if (!has_pem_block(key_pem, "")) return std::string("no PEM private key in it");
  Bio key_bio = memory_bio(key_pem);
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) return "not a valid PEM private key (" + openssl_reason() + ")";
  Bio cert_bio = memory_bio(cert_pem);
  Cert leaf = read_certificate(cert_bio.get());
  if (!leaf) return "not a valid PEM certificate (" + openssl_reason() + ")";
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return std::string("the key does not match the certificate");
  }
  return std::nullopt;
}

std::string format_utc(std::int64_t unix_seconds) {
  std::time_t time = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  gmtime_r(&time, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &parts);
  return text;
}

}  // namespace deployctl
