#include "tls_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "read_file.h"

namespace deployctl {

namespace {

constexpr std::size_t kTicketKeyBytes = 80;  // nginx's format: name, HMAC key, AES key
constexpr std::size_t kMaxPemBytes = 1 << 20;

std::string system_error(const std::string& what) { return what + ": " + std::strerror(errno); }

// Writes fresh random bytes to a temporary file and renames it over `path`.
bool write_ticket_key(const std::string& path, std::string* error) {
  unsigned char bytes[kTicketKeyBytes];
  if (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    *error = system_error("cannot draw a session ticket key");
    return false;
  }
  const std::string temporary = path + ".new";
  unlink(temporary.c_str());
  int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *error = system_error("cannot create " + temporary);
    return false;
  }
  const bool written = write(fd, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes);
  close(fd);
  if (!written || rename(temporary.c_str(), path.c_str()) != 0) {
    *error = system_error("cannot write " + path);
    unlink(temporary.c_str());
    return false;
  }
  return true;
}

}  // namespace

TlsFiles::~TlsFiles() {
  for (const auto& [service, fd] : ticket_fds_) close(fd);
}

int TlsFiles::ticket_key_fd(const std::string& service, std::optional<uid_t> owner,
                            std::string* error) {
  auto it = ticket_fds_.find(service);
  if (it == ticket_fds_.end()) {
    const std::string path = state_dir_ + "/tls-" + service + ".ticket";
    if (!write_ticket_key(path, error)) return -1;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      *error = system_error("cannot open " + path);
      return -1;
    }
    it = ticket_fds_.emplace(service, fd).first;
  }
  // The owner may change with a reload; the group stays the supervisor's (mode 0600 anyway).
  if (owner && fchown(it->second, *owner, static_cast<gid_t>(-1)) != 0) {
    *error = system_error("cannot give the session ticket key of " + service + " to uid " +
                          std::to_string(*owner));
    return -1;
  }
  return it->second;
}

int sealed_pem_fd(const std::string& path, uid_t uid, gid_t gid, std::string* error) {
  const FileRead pem = read_file(path, kMaxPemBytes);
  if (!pem.ok()) {
    *error = pem.error;
    return -1;
  }
  int fd = memfd_create("deployctl-tls", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    *error = system_error("memfd_create for " + path);
    return -1;
  }
  std::size_t written = 0;
  while (written < pem.text.size()) {
    const ssize_t n = write(fd, pem.text.data() + written, pem.text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (written != pem.text.size() || fchmod(fd, 0400) != 0 || fchown(fd, uid, gid) != 0 ||
      fcntl(fd, F_ADD_SEALS, kSeals) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
    *error = system_error("cannot hand " + path + " to uid " + std::to_string(uid));
    close(fd);
    return -1;
  }
  return fd;
}

ReplicaTlsFds::~ReplicaTlsFds() {
  for (int fd : owned) close(fd);
}

}  // namespace deployctl
