// One log file that rotates by rename (edge: file I/O). Not thread-safe: one owner, which is
// the LogWriter's thread. See docs/logs.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace deployctl {

struct LogLimits {
  std::uint64_t max_size = 10 * 1024 * 1024;
  int keep = 5;
};

class RotatingFile {
 public:
  // DIR/BASE.log; the directory is created (0750) when the file is first opened.
  RotatingFile(std::string dir, std::string base, LogLimits limits);
  ~RotatingFile();
  RotatingFile(const RotatingFile&) = delete;
  RotatingFile& operator=(const RotatingFile&) = delete;

  struct Result {
    std::string error;       // empty: every line was written
    std::size_t lost = 0;    // lines not written (after an error)
  };
  // Appends whole lines (each ends with '\n'), rotating between two lines when the next one
  // would take the file over max_size. A failed write is cut back to the last whole line.
  Result append(std::string_view lines);
  void set_limits(LogLimits limits) { limits_ = limits; }
  const std::string& path() const { return path_; }

 private:
  std::string open_file();
  std::string write_all(std::string_view bytes);
  std::string rotate();

  std::string dir_, base_, path_;
  LogLimits limits_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace deployctl
