#include "fd_keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

namespace deployctl {

namespace {

// A message: one text line ("A name", "D name", "P name pid", "Q"; "R name": drop it and
// answer "R name" once closed; handing over: "F name", "E"; confirming: "T") and at most one
// fd.
constexpr std::size_t kMaxMessage = 512;
constexpr std::chrono::milliseconds kPeerTimeout{2000};

bool send_message(int socket, const std::string& text, int fd) {
  iovec data{const_cast<char*>(text.data()), text.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  for (;;) {
    ssize_t sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    if (sent >= 0) return true;
    if (errno != EINTR) return false;
  }
}

// One message; nullopt at EOF or on error (a timeout set on the socket included). *fd: the
// fd it carried (close-on-exec), or -1.
std::optional<std::string> receive_message(int socket, int* fd) {
  *fd = -1;
  char text[kMaxMessage];
  iovec data{text, sizeof text};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
      std::memcpy(fd, CMSG_DATA(header), sizeof(int));
    }
  }
  if (n <= 0) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
    return std::nullopt;
  }
  return std::string(text, static_cast<std::size_t>(n));
}

void set_timeouts(int socket, std::chrono::milliseconds limit) {
  timeval tv{static_cast<time_t>(limit.count() / 1000),
             static_cast<suseconds_t>((limit.count() % 1000) * 1000)};
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
  setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

int open_pidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// ---- the keeper process ----------------------------------------------------------------------

struct Held {
  std::map<std::string, int> fds;
  std::map<std::string, int> pidfds;  // replicas to outlive no longer than

  void drop(const std::string& name) {
    for (auto* table : {&fds, &pidfds}) {
      if (auto it = table->find(name); it != table->end()) {
        close(it->second);
        table->erase(it);
      }
    }
  }
};

// Holds what the supervisor sends until it quits (true) or dies (false).
bool hold(int supervisor, Held& held) {
  for (;;) {
    int fd = -1;
    auto text = receive_message(supervisor, &fd);
    if (!text) return false;
    const std::string_view line = *text;
    const std::string name(line.size() > 2 ? line.substr(2) : std::string_view());
    if (line == "Q") {
      if (fd >= 0) close(fd);
      return true;
    }
    if (line.starts_with("A ") && fd >= 0) {
      held.drop(name);
      held.fds[name] = fd;
    } else if (line.starts_with("P ")) {
      if (fd >= 0) close(fd);
      const auto space = name.rfind(' ');
      const std::string key = name.substr(0, space);
      held.drop(key);
      const int pidfd =
          space == std::string::npos ? -1 : open_pidfd(std::atoi(name.c_str() + space + 1));
      if (pidfd >= 0) held.pidfds[key] = pidfd;
    } else {
      if (fd >= 0) close(fd);
      if (line.starts_with("D ")) held.drop(name);
      if (line.starts_with("R ")) {  // closed before the answer: the caller relies on it
        held.drop(name);
        send_message(supervisor, std::string(line), -1);
      }
    }
  }
}

int listen_at(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) return -1;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int socket = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (socket < 0) return -1;
  unlink(path.c_str());
  const mode_t old_mask = umask(077);
  const bool ok = bind(socket, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  chmod(path.c_str(), 0600) == 0 && listen(socket, 4) == 0;
  umask(old_mask);
  if (!ok) {
    close(socket);
    return -1;
  }
  return socket;
}

// Hands everything to the connected peer; true once it confirmed.
bool hand_over(int peer, const Held& held) {
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (getsockopt(peer, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0 ||
      credentials.uid != getuid()) {
    return false;
  }
  set_timeouts(peer, kPeerTimeout);
  for (const auto& [name, fd] : held.fds) {
    if (!send_message(peer, "F " + name, fd)) return false;
  }
  if (!send_message(peer, "E", -1)) return false;
  int fd = -1;
  auto answer = receive_message(peer, &fd);
  if (fd >= 0) close(fd);
  return answer && *answer == "T";
}

// After the supervisor died: waits for its successor, or for the last replica to exit.
int hand_over_when_asked(const std::string& path, Held& held) {
  if (held.pidfds.empty()) return 0;
  int listener = listen_at(path);
  if (listener < 0) {
    std::fprintf(stderr, "deployctl fd keeper: cannot listen on %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  for (;;) {
    std::vector<pollfd> watched{{listener, POLLIN, 0}};
    for (const auto& [name, pidfd] : held.pidfds) watched.push_back({pidfd, POLLIN, 0});
    if (poll(watched.data(), watched.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    std::vector<std::string> exited;
    for (const auto& [name, pidfd] : held.pidfds) {
      for (const auto& entry : watched) {
        if (entry.fd == pidfd && entry.revents) exited.push_back(name);
      }
    }
    for (const auto& name : exited) held.drop(name);
    if (held.pidfds.empty()) break;  // every replica is gone: nothing to keep
    if (watched[0].revents & POLLIN) {
      int peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (peer < 0) continue;
      const bool taken = hand_over(peer, held);
      close(peer);
      if (taken) break;
    }
  }
  unlink(path.c_str());
  close(listener);
  return 0;
}

}  // namespace

std::string keeper_socket_path(const std::string& state_dir) { return state_dir + "/keeper.sock"; }

// ---- the supervisor's side -------------------------------------------------------------------

std::unique_ptr<FdKeeper> FdKeeper::start(const std::string& executable,
                                          const std::string& socket_path, std::string* error) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    *error = std::string("socketpair: ") + std::strerror(errno);
    return nullptr;
  }
  const char* argv[] = {"deployctl", "__keeper",          "--fd", "3",
                        "--socket",  socket_path.c_str(), nullptr};
  pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    close(pair[0]);
    close(pair[1]);
    return nullptr;
  }
  if (pid == 0) {  // async-signal-safe calls only until the exec
    if (pair[1] == 3) {
      fcntl(3, F_SETFD, 0);
    } else {
      dup2(pair[1], 3);
    }
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(executable.c_str(), const_cast<char* const*>(argv));
    _exit(127);
  }
  close(pair[1]);
  set_timeouts(pair[0], std::chrono::milliseconds(1000));
  return std::unique_ptr<FdKeeper>(new FdKeeper(pair[0], pid));
}

std::unique_ptr<FdKeeper> FdKeeper::adopt(int fd, pid_t pid) {
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return std::unique_ptr<FdKeeper>(new FdKeeper(fd, pid));
}

FdKeeper::~FdKeeper() { close(fd_); }

bool FdKeeper::send(const std::string& message, int fd) {
  if (broken_) return false;
  if (!send_message(fd_, message, fd)) broken_ = true;
  return !broken_;
}

bool FdKeeper::sync(const std::map<std::string, int>& fds,
                    const std::map<std::string, pid_t>& pids) {
  // What the keeper holds or watches that is no longer wanted: dropped ("D"), forgotten once sent.
  auto drop_unwanted = [this](auto& kept, const auto& wanted) {
    for (auto it = kept.begin(); it != kept.end();) {
      if (wanted.count(it->first) || !send("D " + it->first)) {
        ++it;
      } else {
        it = kept.erase(it);
      }
    }
  };
  drop_unwanted(held_, fds);
  for (const auto& [name, fd] : fds) {
    struct stat info {};
    if (fd < 0 || fstat(fd, &info) != 0) continue;
    const std::pair<dev_t, ino_t> identity{info.st_dev, info.st_ino};
    if (auto it = held_.find(name); it != held_.end() && it->second == identity) continue;
    if (send("A " + name, fd)) held_[name] = identity;
  }
  drop_unwanted(watched_, pids);
  for (const auto& [name, pid] : pids) {
    if (auto it = watched_.find(name); it != watched_.end() && it->second == pid) continue;
    if (send("P " + name + " " + std::to_string(pid))) watched_[name] = pid;
  }
  return !broken_;
}

bool FdKeeper::drop_now(const std::string& name) {
  held_.erase(name);  // asked even if not in held_: an adopted keeper holds what it was sent
  const std::string message = "R " + name;
  if (!send(message)) return false;
  int fd = -1;  // the keeper sends nothing else; a timeout (1 s) counts as unreachable
  auto answer = receive_message(fd_, &fd);
  if (fd >= 0) close(fd);
  if (!answer || *answer != message) broken_ = true;
  return !broken_;
}

void FdKeeper::quit() {
  send("Q");
  held_.clear();
  watched_.clear();
  // Our child (also after an upgrade in place): reaped here, bounded, so that it is not taken
  // for a leftover of the deployment.
  for (int tries = 0; tries < 200; ++tries) {
    const pid_t reaped = waitpid(pid_, nullptr, WNOHANG);
    if (reaped == pid_ || (reaped < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// ---- a new supervisor's side -----------------------------------------------------------------

std::optional<HandedFds> take_from_keeper(const std::string& socket_path, pid_t keeper,
                                          std::chrono::milliseconds limit, std::string* error) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) {
    *error = "the keeper's socket path is too long";
    return std::nullopt;
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int socket = -1;
  for (;;) {
    socket = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (socket >= 0 &&
        connect(socket, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      break;
    }
    const int failure = errno;
    if (socket >= 0) close(socket);
    if (std::chrono::steady_clock::now() >= deadline || kill(keeper, 0) != 0) {
      *error = "no fd keeper answers on " + socket_path + ": " + std::strerror(failure);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0 ||
      credentials.pid != keeper || credentials.uid != getuid()) {
    close(socket);
    *error = socket_path + " is not the recorded fd keeper's";
    return std::nullopt;
  }
  set_timeouts(socket, kPeerTimeout);
  HandedFds fds;
  auto fail = [&](const std::string& why) {
    for (auto& [name, fd] : fds) close(fd);
    close(socket);
    *error = why;
    return std::nullopt;
  };
  for (;;) {
    int fd = -1;
    auto text = receive_message(socket, &fd);
    if (!text) return fail("the fd keeper stopped answering");
    if (*text == "E") break;
    if (!text->starts_with("F ") || fd < 0) {
      if (fd >= 0) close(fd);
      return fail("the fd keeper sent '" + *text + "'");
    }
    const std::string name = text->substr(2);
    if (auto it = fds.find(name); it != fds.end()) close(it->second);
    fds[name] = fd;
  }
  if (!send_message(socket, "T", -1)) return fail("cannot confirm to the fd keeper");
  close(socket);
  return fds;
}

int run_keeper(int argc, char** argv) {
  int fd = -1;
  std::string path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--fd") fd = std::atoi(argv[i + 1]);
    if (flag == "--socket") path = argv[i + 1];
  }
  if (fd < 0 || path.empty()) {
    std::fprintf(stderr, "usage: deployctl __keeper --fd N --socket PATH (started by up)\n");
    return 2;
  }
  if (fd == 3) close_range(4, ~0U, 0);  // nothing but the socketpair is kept by accident
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (int null = open("/dev/null", O_RDONLY); null >= 0) {
    dup2(null, 0);
    if (null != 0) close(null);
  }
  Held held;
  if (hold(fd, held)) return 0;
  close(fd);
  return hand_over_when_asked(path, held);
}

}  // namespace deployctl
