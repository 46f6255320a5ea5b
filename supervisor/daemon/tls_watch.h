// Watches the certificate and key files of [tls] services with inotify, on the Asio loop
// (edge). Certificate tools replace files by writing a new one and renaming it into place
// (certbot's and lego's way), so the files' directories are watched: a file renamed, created or
// closed after writing under a watched name counts as a change. A service is reported once its
// files have been quiet for `settle`, so a cert and key replaced one after the other make one
// report.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "asio.h"
#include "clock.h"

namespace deployctl {

class TlsWatch {
 public:
  using Changed = std::function<void(const std::string& service)>;
  TlsWatch(boost::asio::io_context& io, Duration settle, Changed on_changed);
  ~TlsWatch();
  TlsWatch(const TlsWatch&) = delete;
  TlsWatch& operator=(const TlsWatch&) = delete;

  // Replaces what is watched: service -> its files (absolute paths). Changes pending for
  // services no longer listed are dropped. false with *error if inotify cannot be set up
  // (nothing is watched then).
  bool watch(const std::map<std::string, std::vector<std::string>>& files, std::string* error);

 private:
  void close();
  void read_events();
  void noticed(int wd, const std::string& name);
  void overflowed();
  void arm();  // reports the pending services once quiet for settle_

  boost::asio::io_context& io_;
  Duration settle_;
  Changed on_changed_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> inotify_;
  boost::asio::steady_timer timer_;
  // Per watch descriptor: the file names in its directory -> the services they belong to.
  std::map<int, std::map<std::string, std::set<std::string>>> watched_;
  std::set<std::string> pending_;
};

}  // namespace deployctl
