#include "detached_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <spdlog/sinks/base_sink.h>

namespace deployctl {
namespace {

std::uint64_t stderr_size() {
  struct stat info {};
  return fstat(STDERR_FILENO, &info) == 0 ? static_cast<std::uint64_t>(info.st_size) : 0;
}

// Starts a new `path` as fd 2, the old one becoming path.1. Opens first: when no fd is left
// (EMFILE), nothing is renamed and the next message tries again.
bool rotate(const std::string& path) {
  const std::string fresh = path + ".new";
  int fd = open(fresh.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::rename(path.c_str(), (path + ".1").c_str());
  std::rename(fresh.c_str(), path.c_str());
  dup2(fd, STDERR_FILENO);
  close(fd);
  return true;
}

class DetachedLogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  DetachedLogSink(std::string path, std::uint64_t max_size)
      : path_(std::move(path)), max_size_(max_size) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t text;
    formatter_->format(message, text);
    // fstat each time: the file may have been truncated or rotated from outside.
    if (stderr_size() + text.size() > max_size_) rotate(path_);
    for (std::size_t done = 0; done < text.size();) {
      ssize_t n = write(STDERR_FILENO, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk: the message is lost, the supervisor goes on
      done += static_cast<std::size_t>(n);
    }
  }
  void flush_() override {}

 private:
  const std::string path_;
  const std::uint64_t max_size_;
};

}  // namespace

bool redirect_to_detached_log(const std::string& path, std::uint64_t max_size) {
  struct stat info {};
  if (stat(path.c_str(), &info) == 0 && static_cast<std::uint64_t>(info.st_size) > max_size) {
    std::rename(path.c_str(), (path + ".1").c_str());
  }
  int log = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    close(null);
  }
  if (log < 0) return false;
  dup2(log, STDERR_FILENO);
  close(log);
  return true;
}

std::shared_ptr<spdlog::logger> make_detached_logger(const std::string& name,
                                                     const std::string& path,
                                                     std::uint64_t max_size) {
  return std::make_shared<spdlog::logger>(name,
                                          std::make_shared<DetachedLogSink>(path, max_size));
}

}  // namespace deployctl
