// `deployctl validate` for [services.NAME.tls] cert/key files: they exist, are readable, parse,
// match each other, have not expired, and the key is not readable by everyone. Reads the files;
// the inspection itself is certificate.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "certificate.h"
#include "spec.h"

namespace deployctl {

struct TlsProblem {
  bool error = true;  // false: a warning, validate still succeeds
  std::string key;    // "services.web.tls.cert"
  std::string file;   // the certificate or key file concerned
  std::string message;

  // "KEY: FILE: MESSAGE"
  std::string to_string() const;
};

struct TlsFileReport {
  std::string service;
  std::string cert;                       // the files checked
  std::optional<CertificateFacts> facts;  // when the certificate parses
  std::vector<TlsProblem> problems;
};

// One report per service with tls cert/key files (ACME services have none yet), in spec
// order. now: Unix seconds. A key file with any permission for "other" is an error (the key
// must be readable by the service's user and nobody else; group access is allowed for setups
// such as Debian's ssl-cert group).
std::vector<TlsFileReport> check_tls_files(const Spec& spec, std::int64_t now);

// Reads the key file's permission bits; nullopt if it cannot be stat'ed. Exposed for tests.
std::optional<unsigned> file_mode(const std::string& path);

}  // namespace deployctl
