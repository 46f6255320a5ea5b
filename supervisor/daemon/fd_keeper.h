// The fd keeper (docs/upgrade.md, "Crash of the supervisor"): a small process the supervisor
// starts (`deployctl __keeper`) that holds a duplicate of every fd that must outlive the
// supervisor: listen sockets, each replica's control socket, notify socket and output pipes.
// Like systemd's fd store (FDSTORE=1 / FDSTOREREMOVE=1), with and without systemd.
//
// While the supervisor lives, the keeper only holds what it is sent over their socketpair
// (SOCK_SEQPACKET, SCM_RIGHTS, one named fd per message). When the socketpair hits EOF without
// a "quit" (the supervisor died), it listens on STATE/keeper.sock (0600, same uid only) and
// hands every fd, with its name, to the first supervisor of the deployment that connects and
// confirms, then exits. It also exits once every replica it was told about has exited (it
// watches them with pidfds), so nothing outlives the deployment by accident; `down` or a
// refused adoption stop it by recorded pid and start time (leftovers.h). Every send and wait
// is bounded. Edge: sockets, fork/exec, pidfd. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace deployctl {

// STATE/keeper.sock of the deployment whose state directory is `state_dir`.
std::string keeper_socket_path(const std::string& state_dir);

// The id under which the keeper is recorded in STATE/replicas.json (leftovers.h).
inline constexpr const char* kKeeperId = "fd-keeper";

// The supervisor's side.
class FdKeeper {
 public:
  // Forks and executes `executable __keeper --fd 3 --socket SOCKET`; null with *error if it
  // cannot. The keeper leaves the session (setsid) so a terminal's Ctrl+C does not reach it.
  static std::unique_ptr<FdKeeper> start(const std::string& executable,
                                         const std::string& socket_path, std::string* error);
  // The keeper of the previous binary, after an upgrade in place: same socketpair, same pid.
  // Everything is sent again at the next sync().
  static std::unique_ptr<FdKeeper> adopt(int fd, pid_t pid);
  ~FdKeeper();

  // Makes the keeper hold exactly `fds` (name -> fd) and watch exactly `pids` (name -> pid):
  // sends what is new or now refers to another file (by device and inode), drops what is gone.
  // False once the keeper is unreachable (it died): the supervisor runs on, unprotected.
  bool sync(const std::map<std::string, int>& fds, const std::map<std::string, pid_t>& pids);
  // Makes the keeper close its copy of `name` now and waits (bounded) until it confirms: for a
  // socket whose closing must take effect at once (a per-replica socket leaves its reuseport
  // group only when its last copy closes). True once confirmed (also when it held no such fd);
  // false once the keeper is unreachable.
  bool drop_now(const std::string& name);
  // The deployment stopped: the keeper drops everything and exits (waited for, at most 1 s).
  void quit();

  int fd() const { return fd_; }
  pid_t pid() const { return pid_; }

 private:
  FdKeeper(int fd, pid_t pid) : fd_(fd), pid_(pid) {}
  bool send(const std::string& message, int fd = -1);

  int fd_;
  pid_t pid_;
  bool broken_ = false;
  std::map<std::string, std::pair<dev_t, ino_t>> held_;  // what the keeper holds, by name
  std::map<std::string, pid_t> watched_;
};

// The fds a keeper handed over, by name; the caller owns them (close-on-exec set).
using HandedFds = std::map<std::string, int>;

// A new supervisor's side: connects to the keeper at `socket_path` (retrying while `keeper`
// is alive, it may not have noticed the death yet), receives every fd and confirms, so the
// keeper exits. nullopt with *error if there is no keeper or it does not answer within `limit`.
std::optional<HandedFds> take_from_keeper(const std::string& socket_path, pid_t keeper,
                                          std::chrono::milliseconds limit, std::string* error);

// `deployctl __keeper --fd N --socket PATH`: the keeper process itself.
int run_keeper(int argc, char** argv);

}  // namespace deployctl
