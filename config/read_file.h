// The one way deployctl reads a whole file (specs, env files, scale.json, pid files, /proc and
// cgroup files): regular files only, at most a given size, and never a read that can block
// (O_NONBLOCK, so a FIFO cannot hold the event loop; fstat after open, so the checks apply to
// the file actually read). No exceptions.
#pragma once

#include <cstddef>
#include <string>

namespace deployctl {

// Caps that fit each use; docs/spec.md states the first two.
inline constexpr std::size_t kMaxSpecBytes = 4 << 20;     // deploy.toml
inline constexpr std::size_t kMaxEnvFileBytes = 1 << 20;  // a service's env_file
inline constexpr std::size_t kMaxStateBytes = 4 << 20;    // files the supervisor wrote itself
inline constexpr std::size_t kMaxKernelBytes = 1 << 20;   // /proc and cgroup files

struct FileRead {
  std::string text;      // the whole file when error is empty
  std::string error;     // empty on success; else names the path and says what is wrong
  int error_number = 0;  // errno of a failed open/read (ENOENT: no such file), 0 otherwise

  bool ok() const { return error.empty(); }
};

// Reads all of `path` if it is a regular file of at most max_bytes. A FIFO, directory, device
// or socket is an error ("is a FIFO, not a regular file"), as is a file that holds more than
// max_bytes (also one like /proc's that reports size 0: reading stops after max_bytes + 1).
FileRead read_file(const std::string& path, std::size_t max_bytes);

}  // namespace deployctl
