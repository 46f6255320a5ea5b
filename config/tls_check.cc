#include "tls_check.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace deployctl {
namespace {

constexpr std::int64_t kDay = 24 * 60 * 60;

// The file's bytes, or the reason it cannot be read.
struct FileText {
  std::optional<std::string> text;
  std::string error;
};

FileText read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {std::nullopt, std::string("cannot read: ") + std::strerror(errno)};
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return {bytes.str(), ""};
}

class Checker {
 public:
  Checker(const ServiceSpec& service, TlsFileReport* report)
      : prefix_("services." + service.name + ".tls."), report_(report) {}

  void problem(std::string_view key, const std::string& file, std::string message,
               bool error = true) {
    report_->problems.push_back({error, prefix_ + std::string(key), file, std::move(message)});
  }

  std::optional<std::string> read(std::string_view key, const std::string& path) {
    FileText file = read_file(path);
    if (!file.text) problem(key, path, file.error);
    return file.text;
  }

 private:
  std::string prefix_;
  TlsFileReport* report_;
};

void check_expiry(Checker& check, const TlsSpec& tls, const CertificateFacts& facts,
                  std::int64_t now) {
  if (facts.not_after <= now) {
    check.problem("cert", tls.cert, "the certificate expired on " + format_utc(facts.not_after));
  } else if (facts.not_before > now) {
    check.problem("cert", tls.cert,
                  "the certificate is not valid before " + format_utc(facts.not_before));
  } else if (facts.not_after - now < 7 * kDay) {
    check.problem(
        "cert", tls.cert,
        "the certificate expires in less than 7 days (" + format_utc(facts.not_after) + ")", false);
  }
}

void check_key_mode(Checker& check, const std::string& key_path) {
  std::optional<unsigned> mode = file_mode(key_path);
  if (mode && (*mode & 07) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", *mode & 07777);
    check.problem("key", key_path,
                  std::string("the private key is accessible to every user (mode ") + octal +
                      "); chmod o-rwx it (e.g. 0600 or 0640)");
  }
}

TlsFileReport check_service(const ServiceSpec& service, const TlsSpec& tls, std::int64_t now) {
  TlsFileReport report{service.name, tls.cert, std::nullopt, {}};
  Checker check(service, &report);
  std::optional<std::string> cert = check.read("cert", tls.cert);
  std::optional<std::string> key = check.read("key", tls.key);
  if (key) check_key_mode(check, tls.key);
  if (cert) {
    auto facts = inspect_certificate(*cert);
    if (auto* error = std::get_if<std::string>(&facts)) {
      check.problem("cert", tls.cert, *error);
      return report;
    }
    report.facts = std::get<CertificateFacts>(facts);
    check_expiry(check, tls, *report.facts, now);
  }
  if (cert && key) {
    if (auto mismatch = key_mismatch(*cert, *key)) {
      check.problem("key", tls.key, *mismatch + " (" + tls.cert + ")");
    }
  }
  return report;
}

}  // namespace

std::string TlsProblem::to_string() const { return key + ": " + file + ": " + message; }

std::optional<unsigned> file_mode(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return static_cast<unsigned>(info.st_mode);
}

std::vector<TlsFileReport> check_tls_files(const Spec& spec, std::int64_t now) {
  std::vector<TlsFileReport> reports;
  for (const ServiceSpec& service : spec.services) {
    if (!service.tls || service.tls->acme) continue;
    reports.push_back(check_service(service, *service.tls, now));
  }
  return reports;
}

}  // namespace deployctl
