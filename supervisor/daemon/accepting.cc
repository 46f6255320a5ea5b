#include "accepting.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "process.h"
#include "read_file.h"

namespace deployctl {
namespace {

// "" when unreadable. Not an ifstream: libstdc++ throws from a read error (ESRCH from the
// /proc files of a process that exits meanwhile), which took the supervisor down.
std::string read_text(const std::string& path) { return read_file(path, kMaxKernelBytes).text; }

std::vector<std::string> entries(const std::string& dir_path, bool* readable) {
  std::vector<std::string> names;
  DIR* dir = opendir(dir_path.c_str());
  *readable = dir != nullptr || errno != EACCES;
  if (!dir) return names;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') names.emplace_back(entry->d_name);
  }
  closedir(dir);
  return names;
}

bool epoll_of_process_watches(const std::string& proc, const std::vector<std::string>& fds,
                              ino_t inode) {
  char target[64];
  for (const auto& fd : fds) {
    const ssize_t length = readlink((proc + "/fd/" + fd).c_str(), target, sizeof target - 1);
    if (length <= 0 || std::string_view(target, length) != "anon_inode:[eventpoll]") continue;
    if (epoll_watches(read_text(proc + "/fdinfo/" + fd), inode)) return true;
  }
  return false;
}

// A thread in accept(); or, in a process without children, in select()/poll(). (gunicorn's
// arbiter sleeps in select() while its workers still start; its sync workers accept in one.)
bool thread_waits(const std::string& proc, bool has_children) {
  bool readable;
  for (const auto& task : entries(proc + "/task", &readable)) {
    const std::string wchan = read_text(proc + "/task/" + task + "/wchan");
    if (wchan.find("accept") != std::string::npos ||
        (!has_children && may_wait_for_connection(wchan))) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool epoll_watches(std::string_view fdinfo, ino_t inode) {
  std::size_t line_start = 0;
  while (line_start < fdinfo.size()) {
    std::size_t line_end = fdinfo.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = fdinfo.size();
    const auto line = fdinfo.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.substr(0, 4) != "tfd:") continue;
    const auto at = line.find(" ino:");
    if (at == std::string_view::npos) continue;
    const std::string hex(line.substr(at + 5, line.find(' ', at + 5) - (at + 5)));
    char* end = nullptr;
    const unsigned long long value = std::strtoull(hex.c_str(), &end, 16);
    if (end != hex.c_str() && *end == '\0' && value == inode) return true;
  }
  return false;
}

bool may_wait_for_connection(std::string_view wchan) {
  while (!wchan.empty() && (wchan.back() == '\n' || wchan.back() == ' ')) wchan.remove_suffix(1);
  return wchan.find("accept") != std::string_view::npos ||
         wchan.find("wait_for_connect") != std::string_view::npos || wchan == "do_select" ||
         wchan == "core_sys_select" || wchan == "do_sys_poll" || wchan == "do_poll";
}

bool tree_accepts_on(pid_t root, int socket_fd) {
  struct stat socket_stat {};
  if (fstat(socket_fd, &socket_stat) != 0) return true;
  std::vector<pid_t> todo{root};
  for (std::size_t next = 0; next < todo.size(); ++next) {
    const std::string proc = "/proc/" + std::to_string(todo[next]);
    bool readable;
    const auto fds = entries(proc + "/fd", &readable);
    if (!readable) return true;
    const auto children = child_pids(todo[next]);
    if (epoll_of_process_watches(proc, fds, socket_stat.st_ino) ||
        thread_waits(proc, !children.empty())) {
      return true;
    }
    todo.insert(todo.end(), children.begin(), children.end());
  }
  return false;
}

}  // namespace deployctl
