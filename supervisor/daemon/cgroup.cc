#include "cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "read_file.h"

namespace deployctl {
namespace {

// The file's text, or "" if it cannot be read (cgroup and /proc files: small, never blocking).
std::string read_text(const std::string& path) { return read_file(path, kMaxKernelBytes).text; }

std::optional<std::uint64_t> read_number(const std::string& path) {
  std::istringstream file(read_text(path));
  std::uint64_t value = 0;
  if (!(file >> value)) return std::nullopt;
  return value;
}

// Writes `value` with one write(2), as cgroup files want; false with *error (errno text).
bool write_file(const std::string& path, const std::string& value, std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  if (!ok && error) *error = "cannot write '" + value + "' to " + path + ": " + std::strerror(errno);
  if (fd >= 0) close(fd);
  return ok;
}

bool writable_dir(const std::string& dir) {
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && access(dir.c_str(), W_OK) == 0;
}

bool on_cgroup_fs(const std::string& path) {
  struct statfs fs;
  if (statfs(path.c_str(), &fs) != 0) return false;
  return fs.f_type == CGROUP2_SUPER_MAGIC || fs.f_type == CGROUP_SUPER_MAGIC;
}

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream words(text);
  std::string w;
  while (words >> w) {
    if (w == word) return true;
  }
  return false;
}

std::optional<std::string> v2_dir(const CgroupHost& host, std::string* why) {
  std::string dir;
  if (host.own_dir) {
    dir = *host.own_dir;
  } else if (auto path = own_cgroup_path(host.proc_self_cgroup, "")) {
    dir = host.v2_mount + *path;
  } else {
    *why = "no cgroup v2 entry in /proc/self/cgroup";
    return std::nullopt;
  }
  if (!has_word(read_text(dir + "/cgroup.controllers"), "memory")) {
    *why = "cgroup v2: the memory controller is not available in " + dir;
    return std::nullopt;
  }
  if (!writable_dir(dir) || access((dir + "/cgroup.subtree_control").c_str(), W_OK) != 0) {
    *why = "cgroup v2: " + dir + " is not writable (not delegated)";
    return std::nullopt;
  }
  return dir;
}

std::optional<std::string> v1_dir(const CgroupHost& host, std::string* why) {
  std::string dir;
  if (host.own_dir) {
    dir = *host.own_dir;
  } else if (auto path = own_cgroup_path(host.proc_self_cgroup, "memory")) {
    dir = host.v1_memory_mount + *path;
  } else {
    *why = "no cgroup v1 memory controller in /proc/self/cgroup";
    return std::nullopt;
  }
  if (access((dir + "/memory.limit_in_bytes").c_str(), F_OK) != 0 || !writable_dir(dir)) {
    *why = "cgroup v1: " + dir + " has no writable memory controller";
    return std::nullopt;
  }
  return dir;
}

}  // namespace

const char* mode_name(MemoryMode mode) {
  switch (mode) {
    case MemoryMode::cgroup2: return "cgroup2";
    case MemoryMode::cgroup1: return "cgroup1";
    case MemoryMode::sampling: return "sampling";
  }
  return "?";
}

std::optional<MemoryMode> parse_mode(const std::string& text) {
  for (MemoryMode mode : {MemoryMode::cgroup2, MemoryMode::cgroup1, MemoryMode::sampling}) {
    if (text == mode_name(mode)) return mode;
  }
  return std::nullopt;
}

CgroupHost host_from_environment() {
  CgroupHost host;
  host.proc_self_cgroup = read_text("/proc/self/cgroup");
  if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0) {
    host.v2_mount = "/sys/fs/cgroup/unified";  // hybrid hierarchy
  }
  if (const char* root = std::getenv("DEPLOYCTL_CGROUP_ROOT"); root && *root) host.own_dir = root;
  if (const char* mode = std::getenv("DEPLOYCTL_MEMORY_MODE"); mode && *mode) {
    host.forced = parse_mode(mode);
  }
  return host;
}

std::optional<std::string> own_cgroup_path(const std::string& proc_self_cgroup,
                                           const std::string& controller) {
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {  // "id:controller,controller:/path"
    auto first = line.find(':');
    auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    for (auto& c : controllers) c = c == ',' ? ' ' : c;
    const bool match = controller.empty() ? line.compare(0, first, "0") == 0 && controllers.empty()
                                          : has_word(controllers, controller);
    if (match) return line.substr(second + 1);
  }
  return std::nullopt;
}

MemorySetup detect_memory_mode(const CgroupHost& host) {
  MemorySetup setup;
  std::string why_not_v2, why_not_v1;
  const bool try_v2 = !host.forced || host.forced == MemoryMode::cgroup2;
  const bool try_v1 = !host.forced || host.forced == MemoryMode::cgroup1;
  if (try_v2) {
    if (auto dir = v2_dir(host, &why_not_v2)) {
      return {MemoryMode::cgroup2, *dir, "cgroup v2 memory controller in " + *dir};
    }
  }
  if (try_v1) {
    if (auto dir = v1_dir(host, &why_not_v1)) {
      return {MemoryMode::cgroup1, *dir, "cgroup v1 memory controller in " + *dir};
    }
  }
  setup.reason = host.forced == MemoryMode::sampling ? "forced by DEPLOYCTL_MEMORY_MODE"
                                                     : why_not_v2.empty() ? why_not_v1
                                                     : why_not_v1.empty() ? why_not_v2
                                                     : why_not_v2 + "; " + why_not_v1;
  return setup;
}

bool prepare_cgroup2(const std::string& dir, std::string* error) {
  const std::string leaf = dir + "/supervisor";
  if (mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
    *error = "cannot create " + leaf + ": " + std::strerror(errno);
    return false;
  }
  return write_file(leaf + "/cgroup.procs", "0", error) &&
         write_file(dir + "/cgroup.subtree_control", "+memory", error);
}

void release_cgroup2(const std::string& dir) {
  write_file(dir + "/cgroup.subtree_control", "-memory", nullptr);
  write_file(dir + "/cgroup.procs", "0", nullptr);
  const std::string leaf = dir + "/supervisor";
  if (on_cgroup_fs(leaf)) {
    rmdir(leaf.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(leaf, ec);
  }
}

std::optional<ReplicaCgroup> ReplicaCgroup::create(MemoryMode mode, const std::string& parent,
                                                   const std::string& name,
                                                   const MemoryLimits& limits,
                                                   std::string* error) {
  ReplicaCgroup cgroup(mode, parent + "/" + name);
  const std::string& path = cgroup.path_;
  cgroup.fresh_ = mkdir(path.c_str(), 0755) == 0;
  if (!cgroup.fresh_ && errno != EEXIST) {
    *error = "cannot create the cgroup " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (!on_cgroup_fs(path)) write_file(cgroup.procs_file(), "", nullptr);  // a test tree: no kernel
  if (limits.max) {
    const std::string bytes = std::to_string(*limits.max);
    if (mode == MemoryMode::cgroup2) {
      if (!write_file(path + "/memory.max", bytes, error)) return std::nullopt;
      write_file(path + "/memory.oom.group", "1", nullptr);  // an OOM kill takes the whole tree
    } else {
      if (!write_file(path + "/memory.limit_in_bytes", bytes, error)) return std::nullopt;
      if (access((path + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0) {
        write_file(path + "/memory.memsw.limit_in_bytes", bytes, nullptr);  // no swapping past it
      }
    }
  }
  cgroup.oom_baseline_ = cgroup.fresh_ ? 0 : cgroup.oom_counter();  // a read less per spawn
  return cgroup;
}

std::optional<ReplicaCgroup> ReplicaCgroup::adopt(MemoryMode mode, const std::string& path,
                                                  std::optional<std::uint64_t> oom_baseline) {
  struct stat st;
  if (mode == MemoryMode::sampling || stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return std::nullopt;
  }
  ReplicaCgroup cgroup(mode, path);
  cgroup.oom_baseline_ = oom_baseline ? *oom_baseline : cgroup.oom_counter();
  return cgroup;
}

std::optional<std::uint64_t> ReplicaCgroup::usage() const {
  const bool v2 = mode_ == MemoryMode::cgroup2;
  auto used = read_number(path_ + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
  if (!used) return std::nullopt;
  auto inactive = keyed_value(read_text(path_ + "/memory.stat"),
                              v2 ? "inactive_file" : "total_inactive_file");
  return inactive && *inactive < *used ? *used - *inactive : *used;
}

std::uint64_t ReplicaCgroup::oom_counter() const {
  const bool v2 = mode_ == MemoryMode::cgroup2;
  auto text = read_text(path_ + (v2 ? "/memory.events" : "/memory.oom_control"));
  return keyed_value(text, "oom_kill").value_or(0);
}

std::uint64_t ReplicaCgroup::oom_kills() const {
  const std::uint64_t now = oom_counter();
  return now > oom_baseline_ ? now - oom_baseline_ : 0;
}

std::vector<int> ReplicaCgroup::members() const {
  std::vector<int> pids;
  std::istringstream text(read_text(procs_file()));
  long pid;
  while (text >> pid) {
    if (pid > 0) pids.push_back(static_cast<int>(pid));  // a test tree may hold the child's "0"
  }
  return pids;
}

void ReplicaCgroup::kill_all() const {
  if (mode_ == MemoryMode::cgroup2 && on_cgroup_fs(path_) &&
      access((path_ + "/cgroup.kill").c_str(), F_OK) == 0) {
    write_file(path_ + "/cgroup.kill", "1", nullptr);
  }
  for (int pass = 0; pass < 3; ++pass) {  // a member may fork while we kill
    auto pids = members();
    if (pids.empty()) return;
    for (int pid : pids) kill(pid, SIGKILL);
  }
}

bool ReplicaCgroup::remove() const {
  if (!on_cgroup_fs(path_)) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    return !ec;
  }
  return rmdir(path_.c_str()) == 0 || errno == ENOENT;
}

std::optional<std::uint64_t> keyed_value(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  std::string name;
  std::uint64_t value;
  while (lines >> name) {
    if (name == key && lines >> value) return value;
    std::getline(lines, name);  // rest of the line
  }
  return std::nullopt;
}

}  // namespace deployctl
