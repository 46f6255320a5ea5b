// Routes the exit of every child of this process to whoever started it (edge). Owns SIGCHLD:
// one per process, on the supervisor's event loop. Children nobody watches (orphans adopted as
// a child subreaper) are reaped and reported to `on_orphan`.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>

#include "asio.h"

namespace deployctl {

class ChildWatcher {
 public:
  using OnExit = std::function<void(int wait_status)>;

  explicit ChildWatcher(boost::asio::io_context& io);

  // Calls `on_exit` once, on the event loop, when `pid` exits. With `kill_group`, what is left
  // of the process group `pid` leads is SIGKILLed first, while the zombie still pins the group
  // id (so the id cannot have been reused).
  void watch(pid_t pid, OnExit on_exit, bool kill_group = false);
  void forget(pid_t pid);

  std::function<void(pid_t pid, int wait_status)> on_orphan;

  // Reaps what has exited now, without waiting for SIGCHLD (also called on SIGCHLD).
  void reap();
  void stop();

 private:
  void wait_for_signal();

  struct Watch {
    OnExit on_exit;
    bool kill_group;
  };
  boost::asio::signal_set sigchld_;
  std::map<pid_t, Watch> watches_;
};

}  // namespace deployctl
