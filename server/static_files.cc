#include "static_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "content_type.h"
#include "url_path.h"

namespace deployctl::server {
namespace {

// realpath(3) into a std::string; errno is set on failure.
std::optional<std::string> resolve(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr),
                                                       &std::free);
  if (!resolved) return std::nullopt;
  return std::string(resolved.get());
}

FileError error_from_errno(int error) {
  return error == EACCES || error == EPERM ? FileError::forbidden : FileError::not_found;
}

}  // namespace

std::variant<StaticRoot, std::string> StaticRoot::open(const std::string& directory) {
  auto resolved = resolve(directory);
  if (!resolved) return "--root " + directory + ": " + std::strerror(errno);
  struct stat info {};
  if (::stat(resolved->c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return "--root " + directory + ": not a directory";
  }
  return StaticRoot(std::move(*resolved));
}

bool StaticRoot::contains(const std::string& resolved) const {
  if (root_ == "/") return true;
  return resolved == root_ || (resolved.size() > root_.size() && resolved.starts_with(root_) &&
                               resolved[root_.size()] == '/');
}

std::variant<OpenedFile, FileError> StaticRoot::open_file(std::string_view url_path) const {
  http::DecodedPath decoded = http::decode_request_path(url_path);
  switch (decoded.error) {
    case http::PathError::none:
      break;
    case http::PathError::dot_dot_segment:
      return FileError::forbidden;
    default:
      return FileError::bad_path;
  }
  std::string candidate = root_ + decoded.path;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto resolved = resolve(candidate);
    if (!resolved) return error_from_errno(errno);
    if (!contains(*resolved)) return FileError::forbidden;
    UniqueFd fd(::open(resolved->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return error_from_errno(errno);
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) return FileError::not_found;
    if (S_ISDIR(info.st_mode)) {
      candidate = *resolved + "/index.html";
      continue;
    }
    if (!S_ISREG(info.st_mode)) return FileError::not_found;
    return OpenedFile{std::move(fd), static_cast<std::uint64_t>(info.st_size),
                      static_cast<std::int64_t>(info.st_mtime), http::content_type_for(*resolved)};
  }
  return FileError::not_found;  // index.html was itself a directory
}

bool append_file_bytes(int fd, std::size_t count, std::string& out) {
  std::size_t start = out.size();
  out.resize(start + count);
  std::size_t done = 0;
  while (done < count) {
    ssize_t got = ::read(fd, out.data() + start + done, count - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      out.resize(start + done);
      return false;
    }
    done += static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace deployctl::server
