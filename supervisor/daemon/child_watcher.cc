#include "child_watcher.h"

#include <signal.h>
#include <sys/wait.h>

namespace deployctl {

ChildWatcher::ChildWatcher(boost::asio::io_context& io) : sigchld_(io, SIGCHLD) {
  wait_for_signal();
}

void ChildWatcher::watch(pid_t pid, OnExit on_exit, bool kill_group) {
  watches_[pid] = {std::move(on_exit), kill_group};
}

void ChildWatcher::forget(pid_t pid) { watches_.erase(pid); }

void ChildWatcher::stop() {
  boost::system::error_code ignored;
  sigchld_.cancel(ignored);
}

void ChildWatcher::wait_for_signal() {
  sigchld_.async_wait([this](boost::system::error_code ec, int) {
    if (ec) return;
    reap();
    wait_for_signal();
  });
}

void ChildWatcher::reap() {
  for (;;) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    const pid_t pid = info.si_pid;
    auto it = watches_.find(pid);
    if (it != watches_.end() && it->second.kill_group) kill(-pid, SIGKILL);
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) <= 0) return;
    if (it == watches_.end()) {
      if (on_orphan) on_orphan(pid, status);
      continue;
    }
    OnExit on_exit = std::move(it->second.on_exit);
    watches_.erase(it);
    on_exit(status);
  }
}

}  // namespace deployctl
