#include "log_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "log_format.h"

namespace deployctl {
namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

std::size_t count_lines(std::string_view text) {
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

}  // namespace

RotatingFile::RotatingFile(std::string dir, std::string base, LogLimits limits)
    : dir_(std::move(dir)),
      base_(std::move(base)),
      path_(dir_ + "/" + logs::file_name(base_)),
      limits_(limits) {}

RotatingFile::~RotatingFile() {
  if (fd_ >= 0) close(fd_);
}

std::string RotatingFile::open_file() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return "cannot create " + dir_ + ": " + ec.message();
  chmod(dir_.c_str(), 0750);
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) return errno_text("cannot open", path_);
  struct stat info {};
  size_ = fstat(fd_, &info) == 0 ? static_cast<std::uint64_t>(info.st_size) : 0;
  return "";
}

std::string RotatingFile::write_all(std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string error = errno_text("cannot write", path_);
      // Keep the file made of whole lines: drop the part of this batch that got in. The end
      // is read from the file, never remembered: a file truncated from outside (copytruncate)
      // must not be extended back with NUL bytes.
      struct stat info {};
      if (done > 0 && fstat(fd_, &info) == 0 && static_cast<std::size_t>(info.st_size) >= done) {
        if (ftruncate(fd_, info.st_size - static_cast<off_t>(done)) != 0) size_ += done;
      }
      return error;
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += bytes.size();
  return "";
}

// Renames only: a reader holding the old file keeps reading it whole; nothing is copied.
std::string RotatingFile::rotate() {
  std::string error;
  for (const auto& rename_step : logs::rotation_renames(base_, limits_.keep)) {
    const std::string from = dir_ + "/" + rename_step.from, to = dir_ + "/" + rename_step.to;
    if (std::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT && error.empty()) {
      error = errno_text("cannot rotate", from);
    }
  }
  close(fd_);
  fd_ = -1;
  std::string reopen = open_file();
  return reopen.empty() ? error : reopen;
}

RotatingFile::Result RotatingFile::append(std::string_view lines) {
  Result result;
  if (fd_ < 0) {
    result.error = open_file();
    if (!result.error.empty()) {
      result.lost = count_lines(lines);
      return result;
    }
  } else if (struct stat info {}; fstat(fd_, &info) == 0) {
    size_ = static_cast<std::uint64_t>(info.st_size);  // truncated from outside, or not
  }
  std::size_t chunk_start = 0, chunk_end = 0;
  auto flush = [&]() -> bool {
    std::string_view chunk = lines.substr(chunk_start, chunk_end - chunk_start);
    chunk_start = chunk_end;
    if (chunk.empty()) return true;
    std::string error = write_all(chunk);
    if (error.empty()) return true;
    result.error = error;
    result.lost = count_lines(chunk) + count_lines(lines.substr(chunk_end));
    return false;
  };
  while (chunk_end < lines.size()) {
    std::size_t newline = lines.find('\n', chunk_end);
    std::size_t line_end = newline == std::string_view::npos ? lines.size() : newline + 1;
    const std::uint64_t pending = size_ + (chunk_end - chunk_start);
    if (logs::needs_rotation(pending, line_end - chunk_end, limits_.max_size)) {
      if (!flush()) return result;
      if (std::string error = rotate(); !error.empty()) {
        result.error = error;  // the file may have grown past max_size; no line is lost
        if (fd_ < 0) {
          result.lost = count_lines(lines.substr(chunk_end));
          return result;
        }
      }
    }
    chunk_end = line_end;
  }
  flush();
  return result;
}

}  // namespace deployctl
