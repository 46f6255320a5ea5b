// Static files under a document root. Opens files; never follows a path out of the root.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "unique_fd.h"

namespace deployctl::server {

struct OpenedFile {
  UniqueFd fd;
  std::uint64_t size = 0;
  std::int64_t modified = 0;  // seconds since the epoch
  std::string_view content_type;
};

enum class FileError {
  not_found,  // no such regular file (or not readable as one)
  forbidden,  // the path escapes the root, or permission denied
  bad_path,   // undecodable percent escapes or a NUL byte
};

class StaticRoot {
 public:
  // Resolves `directory` once. On failure returns a message naming it and the reason.
  static std::variant<StaticRoot, std::string> open(const std::string& directory);

  // `url_path` is the request path (still percent-encoded). Directories serve index.html.
  std::variant<OpenedFile, FileError> open_file(std::string_view url_path) const;

 private:
  explicit StaticRoot(std::string root) : root_(std::move(root)) {}
  bool contains(const std::string& resolved) const;

  std::string root_;  // canonical, without a trailing '/' unless it is "/"
};

// Appends the next `count` bytes read from `fd` (at its current offset) to `out`.
// False if the file ended early or reading failed; `out` may then hold part of them.
bool append_file_bytes(int fd, std::size_t count, std::string& out);

}  // namespace deployctl::server
