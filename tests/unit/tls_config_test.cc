// Certificate facts (config/certificate.h), the [tls] table of the spec, the tls placeholders
// and `validate`'s file checks (config/tls_check.h). The PEM texts below were made once with
// the openssl CLI: a P-256 certificate for app.example.com (+ www) and its key, another key,
// and a certificate for expired.example.com (same key) valid only in January 2020.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "certificate.h"
#include "load.h"
#include "tls_check.h"

using namespace deployctl;

namespace {

constexpr const char* kLeafPem = R"(-----BEGIN CERTIFICATE-----
MIIB1DCCAXugAwIBAgIUF4Ry3T07LX4uos3VxVJd3//lPTswCgYIKoZIzj0EAwIw
KTEYMBYGA1UEAwwPYXBwLmV4YW1wbGUuY29tMQ0wCwYDVQQKDARTaG9wMB4XDTI2
MTEzMDEwMzkzMFoXDTM2MTEyNzEwMzkzMFowKTEYMBYGA1UEAwwPYXBwLmV4YW1w
bGUuY29tMQ0wCwYDVQQKDARTaG9wMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
qrNmzZlrhfqVZBWM/oftsi2q/3SzHmv0S2GBMs6hoCFlS0GuyMALmembRlUjdBYn
NFq5T0ZA5klUriDb26Tla6OBgDB+MB0GA1UdDgQWBBRrMWnmr9gRDPZEycH1USt2
4UNj+DAfBgNVHSMEGDAWgBRrMWnmr9gRDPZEycH1USt24UNj+DAPBgNVHRMBAf8E
BTADAQH/MCsGA1UdEQQkMCKCD2FwcC5leGFtcGxlLmNvbYIPd3d3LmV4YW1wbGUu
Y29tMAoGCCqGSM49BAMCA0cAMEQCIBAkhqyIPLlkI7VJKzUeRnnSahk7mEuZU/LM
iu/XlyySAiBID5At8kWcWOkuUBx9BITcjUy83gttnd5P0cHycH9Z0w==
-----END CERTIFICATE-----
)";
constexpr const char* kLeafKey = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/wm+gmhxm1SJTWsT
xj75Koe9+r66be2y1MUrfIzEGJmhRANCAASqs2bNmWuF+pVkFYz+h+2yLar/dLMe
a/RLYYEyzqGgIWVLQa7IwAuZ6ZtGVSN0Fic0WrlPRkDmSVSuINvbpOVr
-----END PRIVATE KEY-----
)";
constexpr const char* kOtherKey = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAKGwa4Pc4K3Y0V1o
9+zpYnw6myCUng5HWjC93NF4gC6hRANCAASw3t8zCFiC1X/1yQvqz2p8aADGwKu9
amYiAgKU03CYBgljeC4kcw37FraJQ3bww+tQYwG2hq/UTd+PoD42otde
-----END PRIVATE KEY-----
)";
constexpr const char* kExpiredPem = R"(Certificate:
    Data:
        Version: 1 (0x0)
        Serial Number: 1 (0x1)
        Signature Algorithm: ecdsa-with-SHA256
        Issuer: CN=expired.example.com
        Validity
            Not Before: Jan  1 00:00:00 2020 GMT
            Not After : Feb  1 00:00:00 2020 GMT
        Subject: CN=expired.example.com
        Subject Public Key Info:
            Public Key Algorithm: id-ecPublicKey
                Public-Key: (256 bit)
                pub:
                    04:aa:b3:66:cd:99:6b:85:fa:95:64:15:8c:fe:87:
                    ed:b2:2d:aa:ff:74:b3:1e:6b:f4:4b:61:81:32:ce:
                    a1:a0:21:65:4b:41:ae:c8:c0:0b:99:e9:9b:46:55:
                    23:74:16:27:34:5a:b9:4f:46:40:e6:49:54:ae:20:
                    db:db:a4:e5:6b
                ASN1 OID: prime256v1
                NIST CURVE: P-256
    Signature Algorithm: ecdsa-with-SHA256
    Signature Value:
        30:46:02:21:00:db:07:94:4d:6f:2d:6f:8a:bc:96:d9:bc:d6:
        94:9e:7b:1f:f4:ef:65:d0:a2:34:aa:1d:f8:e1:55:dd:63:8c:
        cd:02:21:00:cf:e9:78:14:ff:84:12:6f:c7:30:15:28:1c:e1:
        86:92:56:83:2e:75:31:ff:f6:c9:42:5c:ef:88:90:dd:58:bc
-----BEGIN CERTIFICATE-----
MIIBJDCBygIBATAKBggqhkjOPQQDAjAeMRwwGgYDVQQDDBNleHBpcmVkLmV4YW1w
bGUuY29tMB4XDTIwMDEwMTAwMDAwMFoXDTIwMDIwMTAwMDAwMFowHjEcMBoGA1UE
AwwTZXhwaXJlZC5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BKqzZs2Za4X6lWQVjP6H7bItqv90sx5r9EthgTLOoaAhZUtBrsjAC5npm0ZVI3QW
JzRauU9GQOZJVK4g29uk5WswCgYIKoZIzj0EAwIDSQAwRgIhANsHlE1vLW+KvJbZ
vNaUnnsf9O9l0KI0qh344VXdY4zNAiEAz+l4FP+EEm/HMBUoHOGGklaDLnUx//bJ
QlzviJDdWLw=
-----END CERTIFICATE-----
)";
constexpr std::int64_t kLeafNotAfter = 2111395170;     // 2036-11-27 10:39:30 UTC
constexpr std::int64_t kExpiredNotAfter = 1580515200;  // 2020-02-01 00:00:00 UTC
constexpr std::int64_t kNow = 1800000000;              // 2027-01-15

// A temp directory with the given files (mode 0600), removed at the end of the test.
class TempFiles {
 public:
  TempFiles() {
    char pattern[] = "/tmp/deployctl-tls-test-XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~TempFiles() { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text, unsigned mode = 0600) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

Spec spec_with_tls(const std::string& cert, const std::string& key) {
  LoadResult loaded = parse_spec(
      "[services.web]\ncommand = \"./web\"\nlisten = [\"127.0.0.1:8443\"]\n"
      "[services.web.tls]\ncert = \"" +
          cert + "\"\nkey = \"" + key + "\"\n",
      "/srv/shop/deploy.toml");
  REQUIRE(loaded.errors.empty());
  return *loaded.spec;
}

std::vector<std::string> problems(const TlsFileReport& report) {
  std::vector<std::string> out;
  for (const auto& problem : report.problems) {
    out.push_back((problem.error ? "error: " : "warning: ") + problem.to_string());
  }
  return out;
}

}  // namespace

TEST_CASE("certificate: facts of a PEM chain") {
  auto facts = inspect_certificate(kLeafPem);
  REQUIRE(std::holds_alternative<CertificateFacts>(facts));
  const auto& leaf = std::get<CertificateFacts>(facts);
  CHECK(leaf.subject == "O=Shop,CN=app.example.com");
  CHECK(leaf.issuer == leaf.subject);  // self-signed
  CHECK(leaf.not_after == kLeafNotAfter);
  CHECK(leaf.not_after - leaf.not_before == 3650LL * 24 * 3600);
  CHECK(leaf.dns_names == std::vector<std::string>{"app.example.com", "www.example.com"});
  CHECK(leaf.chain_length == 1);

  auto chain = inspect_certificate(std::string(kLeafPem) + kExpiredPem);
  REQUIRE(std::holds_alternative<CertificateFacts>(chain));
  CHECK(std::get<CertificateFacts>(chain).chain_length == 2);
  CHECK(std::get<CertificateFacts>(chain).subject == leaf.subject);  // the first is the leaf
  CHECK(std::get<CertificateFacts>(inspect_certificate(kExpiredPem)).not_after == kExpiredNotAfter);
}

TEST_CASE("certificate: garbage, keys and mismatches") {
  CHECK(std::get<std::string>(inspect_certificate("hello")) == "no PEM certificate in it");
  CHECK(std::get<std::string>(inspect_certificate(kLeafKey)) == "no PEM certificate in it");
  auto broken =
      inspect_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  REQUIRE(std::holds_alternative<std::string>(broken));
  CHECK(std::get<std::string>(broken).starts_with("not a valid PEM certificate"));

  CHECK_FALSE(key_mismatch(kLeafPem, kLeafKey));
  CHECK_FALSE(key_mismatch(kExpiredPem, kLeafKey));
  CHECK(key_mismatch(kLeafPem, kOtherKey) == "the key does not match the certificate");
  CHECK(key_mismatch(kLeafPem, "garbage") == "no PEM private key in it");
  CHECK(key_mismatch(kLeafPem, kLeafPem)->starts_with("not a valid PEM private key"));
  CHECK(format_utc(kExpiredNotAfter) == "2020-02-01 00:00:00 UTC");
}

TEST_CASE("tls check: a good pair passes; expiry, mismatch, mode and missing files do not") {
  TempFiles files;
  const std::string cert = files.write("site.pem", kLeafPem);
  const std::string key = files.write("site.key", kLeafKey, 0640);
  auto reports = check_tls_files(spec_with_tls(cert, key), kNow);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].service == "web");
  CHECK(problems(reports[0]).empty());
  REQUIRE(reports[0].facts);
  CHECK(reports[0].facts->not_after == kLeafNotAfter);

  // The same pair a week before it expires: a warning only.
  auto late = check_tls_files(spec_with_tls(cert, key), kLeafNotAfter - 3 * 24 * 3600);
  CHECK(problems(late[0]) ==
        std::vector<std::string>{"warning: services.web.tls.cert: " + cert +
                                 ": the certificate expires in less than 7 days "
                                 "(2036-11-27 10:39:30 UTC)"});

  const std::string expired = files.write("expired.pem", kExpiredPem);
  CHECK(problems(check_tls_files(spec_with_tls(expired, key), kNow)[0]) ==
        std::vector<std::string>{"error: services.web.tls.cert: " + expired +
                                 ": the certificate expired on 2020-02-01 00:00:00 UTC"});

  const std::string other = files.write("other.key", kOtherKey);
  CHECK(problems(check_tls_files(spec_with_tls(cert, other), kNow)[0]) ==
        std::vector<std::string>{"error: services.web.tls.key: " + other +
                                 ": the key does not match the certificate (" + cert + ")"});

  const std::string open_key = files.write("open.key", kLeafKey, 0644);
  CHECK(problems(check_tls_files(spec_with_tls(cert, open_key), kNow)[0]) ==
        std::vector<std::string>{"error: services.web.tls.key: " + open_key +
                                 ": the private key is accessible to every user (mode 0644); "
                                 "chmod o-rwx it (e.g. 0600 or 0640)"});

  const std::string missing = files.dir() + "/missing.pem";
  CHECK(problems(check_tls_files(spec_with_tls(missing, key), kNow)[0]) ==
        std::vector<std::string>{"error: services.web.tls.cert: " + missing +
                                 ": cannot read: No such file or directory"});

  const std::string garbage = files.write("garbage.pem", "garbage\n");
  CHECK(problems(check_tls_files(spec_with_tls(garbage, key), kNow)[0]) ==
        std::vector<std::string>{"error: services.web.tls.cert: " + garbage +
                                 ": no PEM certificate in it"});
}

TEST_CASE("spec: [tls] with files, with acme, and the tls placeholders") {
  LoadResult files = parse_spec(R"(
[services.web]
command = ["./web", "--cert", "{tls_cert}", "--key={tls_key}"]
listen = ["127.0.0.1:8443"]
env = { CERT = "{tls_cert}" }
[services.web.tls]
cert = "certs/site.pem"
key = "/etc/keys/site.key"
)",
                                "/srv/shop/deploy.toml");
  REQUIRE(files.errors.empty());
  const ServiceSpec& web = files.spec->services[0];
  REQUIRE(web.tls);
  CHECK(web.tls->cert == "/srv/shop/certs/site.pem");
  CHECK(web.tls->key == "/etc/keys/site.key");
  CHECK_FALSE(web.tls->acme);
  auto paths = tls_paths(web, "/var/lib/deployctl/shop/acme");
  REQUIRE(paths);
  CHECK(paths->cert == "/srv/shop/certs/site.pem");
  PlaceholderValues values{1, 8001, paths->cert, paths->key};
  CHECK(expand_placeholders(web.command[2], values) == "/srv/shop/certs/site.pem");
  CHECK(expand_placeholders(web.command[3], values) == "--key=/etc/keys/site.key");
  CHECK(expand_placeholders("{replica}:{port} {{tls_cert}}", values) == "1:8001 {tls_cert}");
  CHECK(expand_placeholders("{tls_cert}", PlaceholderValues{}) == "{tls_cert}");
  CHECK(expand_placeholders("{tls_key}", 0, std::nullopt) == "{tls_key}");  // the old overload

  LoadResult acme = parse_spec(R"(
[services.web]
command = "./web"
listen = ["127.0.0.1:8443"]
[services.web.tls]
acme = { domains = ["app.example.com", "www.example.com"], email = "ops@example.com", http_listen = "127.0.0.1:8080" }
)",
                               "/srv/shop/deploy.toml");
  REQUIRE(acme.errors.empty());
  const TlsSpec& tls = *acme.spec->services[0].tls;
  REQUIRE(tls.acme);
  CHECK(tls.acme->domains == std::vector<std::string>{"app.example.com", "www.example.com"});
  CHECK(tls.acme->directory == kLetsEncryptDirectory);
  CHECK(tls.acme->http_listen.port == 8080);
  CHECK(tls.cert.empty());
  CHECK(tls_paths(acme.spec->services[0], "/state/acme")->key ==
        "/state/acme/certificates/app.example.com.key");
  CHECK(check_tls_files(*acme.spec, kNow).empty());  // nothing on disk to check yet
  CHECK(tls.acme->ca_root.empty());

  LoadResult test_ca = parse_spec(R"(
[services.web]
command = "./web"
listen = ["127.0.0.1:8443"]
[services.web.tls]
acme = { domains = ["app.test"], directory = "https://127.0.0.1:14000/dir", http_listen = "127.0.0.1:5002", ca_root = "pki/ca.pem" }
)",
                                  "/srv/shop/deploy.toml");
  REQUIRE(test_ca.errors.empty());
  CHECK(test_ca.spec->services[0].tls->acme->ca_root == "/srv/shop/pki/ca.pem");
  CHECK(test_ca.spec->services[0].tls->acme->directory == "https://127.0.0.1:14000/dir");
}
