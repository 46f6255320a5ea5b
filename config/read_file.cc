#include "read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace deployctl {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

FileRead failure(std::string what, int error_number = 0) {
  return {"", std::move(what), error_number};
}

FileRead not_regular(mode_t mode) {
  return failure(std::string("is ") + kind_of(mode) + ", not a regular file");
}

std::string too_large(std::size_t max_bytes) {
  std::string limit = std::to_string(max_bytes) + " bytes";
  if (max_bytes % (1 << 20) == 0) limit += " (" + std::to_string(max_bytes >> 20) + " MiB)";
  return "is larger than the limit of " + limit;
}

// Closes the descriptor on every path out of read_file.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

FileRead read_file(const std::string& path, std::size_t max_bytes) {
  Fd file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  if (file.fd < 0) {
    const int error_number = errno;
    struct stat info {};
    // Opening a unix socket fails with ENXIO: say what the path is instead.
    if (error_number == ENXIO && ::stat(path.c_str(), &info) == 0) return not_regular(info.st_mode);
    return failure(std::strerror(error_number), error_number);
  }
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) {
    const int error_number = errno;
    return failure(std::strerror(error_number), error_number);
  }
  if (!S_ISREG(info.st_mode)) return not_regular(info.st_mode);
  if (info.st_size > 0 && static_cast<std::size_t>(info.st_size) > max_bytes) {
    return failure(too_large(max_bytes));
  }
  FileRead result;
  // /proc and cgroup files report size 0; read until EOF but never more than max_bytes + 1.
  result.text.resize(std::min(max_bytes + 1, static_cast<std::size_t>(info.st_size) + 4096));
  std::size_t used = 0;
  while (used <= max_bytes) {
    if (used == result.text.size()) result.text.resize(std::min(max_bytes + 1, used * 2));
    const ssize_t n = ::read(file.fd, result.text.data() + used, result.text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error_number = errno;
      return failure(std::strerror(error_number), error_number);
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  if (used > max_bytes) return failure(too_large(max_bytes));
  result.text.resize(used);
  return result;
}

}  // namespace deployctl
