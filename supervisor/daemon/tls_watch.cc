#include "tls_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace deployctl {

namespace asio = boost::asio;

namespace {

constexpr std::uint32_t kMask = IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE;

std::pair<std::string, std::string> split_path(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

TlsWatch::TlsWatch(asio::io_context& io, Duration settle, Changed on_changed)
    : io_(io), settle_(settle), on_changed_(std::move(on_changed)), timer_(io) {}

TlsWatch::~TlsWatch() { close(); }

void TlsWatch::close() {
  if (inotify_) {
    boost::system::error_code ignored;
    inotify_->close(ignored);  // cancels the pending read (its handler sees operation_aborted)
    inotify_.reset();
  }
  watched_.clear();
}

bool TlsWatch::watch(const std::map<std::string, std::vector<std::string>>& files,
                     std::string* error) {
  close();
  std::erase_if(pending_, [&](const std::string& service) { return !files.count(service); });
  if (files.empty()) return true;
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    *error = std::string("inotify: ") + std::strerror(errno);
    return false;
  }
  inotify_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  for (const auto& [service, paths] : files) {
    for (const auto& path : paths) {
      const auto [dir, name] = split_path(path);
      const int wd = inotify_add_watch(fd, dir.c_str(), kMask | IN_ONLYDIR);
      if (wd < 0) {
        *error = "inotify: cannot watch " + dir + ": " + std::strerror(errno);
        close();
        return false;
      }
      watched_[wd][name].insert(service);
    }
  }
  read_events();
  return true;
}

void TlsWatch::read_events() {
  inotify_->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, descriptor = inotify_.get()](boost::system::error_code ec) {
        if (ec || inotify_.get() != descriptor) return;  // closed or replaced meanwhile
        alignas(inotify_event) char buffer[16 * 1024];
        for (;;) {
          const ssize_t got = ::read(inotify_->native_handle(), buffer, sizeof buffer);
          if (got <= 0) break;
          for (ssize_t at = 0; at < got;) {
            const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
            if (event->mask & IN_Q_OVERFLOW) {
              overflowed();
            } else if (event->len > 0) {
              noticed(event->wd, event->name);
            }
            at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
          }
        }
        read_events();
      });
}

void TlsWatch::noticed(int wd, const std::string& name) {
  auto dir = watched_.find(wd);
  if (dir == watched_.end()) return;
  auto file = dir->second.find(name);
  if (file == dir->second.end()) return;
  pending_.insert(file->second.begin(), file->second.end());
  arm();
}

// Events were lost: any watched file may have changed (the check finds out).
void TlsWatch::overflowed() {
  for (const auto& [wd, names] : watched_) {
    for (const auto& [name, services] : names) pending_.insert(services.begin(), services.end());
  }
  arm();
}

void TlsWatch::arm() {
  timer_.expires_after(settle_);  // re-arming cancels the wait below: one report per quiet spell
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    for (const auto& service : std::exchange(pending_, {})) on_changed_(service);
  });
}

}  // namespace deployctl
