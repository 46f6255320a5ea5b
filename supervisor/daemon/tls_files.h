// The daemon's TLS edge for [services.NAME.tls]: which certificate and key files a service's
// replicas load, and the session ticket key they share (docs/spec.md, "tls").
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "spec.h"

namespace deployctl {

class TlsFiles {
 public:
  // state_dir: the deployment's state directory (mode 0700); ticket keys and the ACME
  // directory live in it.
  // acme_dir: where the ACME account and certificates live (acme_state_dir()).
  TlsFiles(std::string state_dir, std::string acme_dir)
      : state_dir_(std::move(state_dir)), acme_dir_(std::move(acme_dir)) {}
  ~TlsFiles();
  TlsFiles(const TlsFiles&) = delete;
  TlsFiles& operator=(const TlsFiles&) = delete;

  // Where the ACME client keeps the account and certificates (lego --path).
  const std::string& acme_dir() const { return acme_dir_; }

  // An open read-only descriptor of the service's session ticket key: 80 random bytes in
  // STATE/tls-SERVICE.ticket, mode 0600, made at the first call of this supervisor's life
  // (so a new supervisor means a new key) and owned by `owner` when given (the replicas' user).
  // Replicas inherit it and read it as /proc/self/fd/N, so the 0700 state directory need not
  // be reachable by them. -1 with *error on failure. The descriptor stays owned by this object.
  int ticket_key_fd(const std::string& service, std::optional<uid_t> owner, std::string* error);

 private:
  std::string state_dir_;
  std::string acme_dir_;
  std::map<std::string, int> ticket_fds_;  // by service
};

// A sealed in-memory copy (memfd) of the PEM file `path`, mode 0400 and owned by uid:gid, for a
// replica that runs as another user and could not open the file itself (the ACME files live in
// the 0700 state directory; a file key is often root's). The replica opens it as
// /proc/self/fd/N: re-opening a memfd checks the memfd's own owner and mode, whereas re-opening
// an inherited regular file checks the file's. Close-on-exec (the spawn dups it into place);
// the caller closes it. -1 with *error on failure.
int sealed_pem_fd(const std::string& path, uid_t uid, gid_t gid, std::string* error);

// The [tls] descriptors one replica inherits after its control socket, in this order: the
// session ticket key, then (a replica of another user) its certificate and key memfds.
struct ReplicaTlsFds {
  ReplicaTlsFds() = default;
  ~ReplicaTlsFds();  // closes `owned`
  ReplicaTlsFds(const ReplicaTlsFds&) = delete;
  ReplicaTlsFds& operator=(const ReplicaTlsFds&) = delete;

  std::vector<int> inherit;  // in order
  std::string ticket_path;   // DEPLOYCTL_TLS_TICKET_KEY: /proc/self/fd/N
  std::vector<int> owned;    // the memfds, closed when this is destroyed (after the launch)
};

}  // namespace deployctl
