// [services.NAME.tls]: cert + key files, or acme = { domains, email, directory, http_listen }.
// Only the spec is checked here; the files are checked by `validate` (tls_check.h).
#include "listen_address.h"
#include "spec_fields.h"

namespace deployctl::detail {
namespace {

bool is_dns_label(std::string_view label) {
  if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
    return false;
  }
  for (char c : label) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Why name is not a domain an HTTP-01 challenge can prove, or nullopt.
std::optional<std::string> domain_error(std::string_view name) {
  if (name.starts_with("*.")) {
    return "wildcard names need a DNS-01 challenge; deployctl answers HTTP-01 only";
  }
  if (name.empty() || name.size() > 253 || name.find('.') == std::string_view::npos) {
    return "expected a fully qualified domain name such as \"app.example.com\", got " + quote(name);
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    if (!is_dns_label(name.substr(start, dot - start))) {
      return "not a valid domain name: " + quote(name) +
             " (labels of letters, digits and '-', separated by dots)";
    }
    start = dot + 1;
  }
  return std::nullopt;
}

void read_domains(TableReader& reader, AcmeSpec* acme) {
  const toml::node* node = reader.find("domains");
  if (!node) {
    reader.error_missing("domains", "acme needs domains = [\"app.example.com\", ...]");
    return;
  }
  const auto* array = node->as_array();
  if (!array || array->empty()) {
    reader.error_at("domains",
                    "expected a non-empty array of domain names, got " + describe(*node));
    return;
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string path = reader.key_path("domains") + "[" + std::to_string(i) + "]";
    std::optional<std::string> name = read_string((*array)[i], path, reader.diag());
    if (!name) continue;
    if (auto error = domain_error(*name)) {
      reader.diag().add((*array)[i].source(), path, *error);
    } else {
      acme->domains.push_back(*name);
    }
  }
}

void read_email(TableReader& reader, AcmeSpec* acme) {
  std::optional<std::string> email = reader.string("email");
  if (!email) return;
  const std::size_t at = email->find('@');
  if (at == 0 || at == std::string::npos || at + 1 >= email->size()) {
    reader.error_at("email",
                    "expected an address such as \"ops@example.com\", got " + quote(*email));
    return;
  }
  acme->email = *email;
}

void read_directory(TableReader& reader, AcmeSpec* acme) {
  std::optional<std::string> url = reader.string("directory");
  if (!url) return;
  if (!url->starts_with("https://") || url->size() <= 8) {
    reader.error_at("directory", "expected the https:// URL of an ACME directory, e.g. " +
                                     quote(kLetsEncryptDirectory) + ", got " + quote(*url));
    return;
  }
  acme->directory = *url;
}

void read_http_listen(TableReader& reader, const std::string& service, ListenClaims* claims,
                      AcmeSpec* acme) {
  if (!reader.find("http_listen")) {
    reader.error_missing("http_listen",
                         "acme needs http_listen = \"0.0.0.0:80\": the address "
                         "that answers HTTP-01 challenges");
    return;
  }
  std::optional<std::string> text = reader.string("http_listen");
  if (!text) return;
  std::string error;
  std::optional<ListenAddress> address = parse_listen_address(*text, 1, &error);
  if (!address) error = "invalid listen address " + quote(*text) + ": " + error;
  if (address) {
    if (auto conflict = claim_conflict(*address, service, *claims)) error = *conflict;
  }
  if (!error.empty()) return reader.error_at("http_listen", error);
  claims->emplace_back(*address, service);
  acme->http_listen = *address;
}

std::optional<AcmeSpec> read_acme(TableReader& tls, const std::string& service,
                                  const std::filesystem::path& spec_dir, ListenClaims* claims) {
  const toml::table* table =
      tls.subtable("acme",
                   "a table such as acme = { domains = [\"app.example.com\"], http_listen = "
                   "\"0.0.0.0:80\" }");
  if (!table) return std::nullopt;
  TableReader reader(*table, tls.key_path("acme"), tls.diag(),
                     {"domains", "email", "directory", "http_listen", "ca_root"});
  AcmeSpec acme;
  read_domains(reader, &acme);
  read_email(reader, &acme);
  read_directory(reader, &acme);
  read_http_listen(reader, service, claims, &acme);
  if (reader.find("ca_root")) {
    std::optional<std::string> ca_root = read_path(reader, "ca_root", spec_dir);
    if (!ca_root) return std::nullopt;
    acme.ca_root = *ca_root;
  }
  return acme;
}

// Exactly one source: both files, or acme. Reports at the first key that breaks the rule.
bool check_one_source(TableReader& reader) {
  const bool cert = reader.find("cert"), key = reader.find("key"), acme = reader.find("acme");
  if (acme && (cert || key)) {
    reader.error_at(cert ? "cert" : "key", "give either cert and key files or acme, not both");
    return false;
  }
  if (acme) return true;
  if (cert && key) return true;
  if (cert || key) {
    reader.error_missing(cert ? "key" : "cert",
                         cert ? "cert needs key = \"...\" (its PEM private key)"
                              : "key needs cert = \"...\" (the PEM certificate chain)");
  } else {
    reader.error_missing("cert", "tls needs cert = \"...\" and key = \"...\", or acme = { ... }");
  }
  return false;
}

}  // namespace

void read_tls(TableReader& service, const std::string& name, const ServiceFacts& facts,
              const std::filesystem::path& spec_dir, ListenClaims* claims,
              std::optional<TlsSpec>* tls) {
  const toml::table* table =
      service.subtable("tls", "a table such as tls = { cert = \"site.pem\", key = \"site.key\" }");
  if (!table) return;
  TableReader reader(*table, service.key_path("tls"), service.diag(), {"cert", "key", "acme"});
  if (!facts.has_listen && !facts.has_port) {
    service.error_at("tls",
                     "tls needs listen = [...] or port = N on the service: it secures "
                     "the sockets the replicas serve");
  }
  if (!check_one_source(reader)) return;
  TlsSpec spec;
  if (reader.find("acme")) {
    std::optional<AcmeSpec> acme = read_acme(reader, name, spec_dir, claims);
    if (!acme) return;
    spec.acme = std::move(*acme);
  } else {
    std::optional<std::string> cert = read_path(reader, "cert", spec_dir);
    std::optional<std::string> key = read_path(reader, "key", spec_dir);
    if (!cert || !key) return;
    spec.cert = *cert;
    spec.key = *key;
  }
  *tls = std::move(spec);
}

}  // namespace deployctl::detail
