#include "tree_cgroup.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "tree_cgroup_leftovers.h"

namespace deployctl {
namespace {

bool on_cgroup2_fs(const std::string& path) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

bool writable_dir(const std::string& dir) {
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && access(dir.c_str(), W_OK) == 0;
}

}  // namespace

std::string deployment_cgroup_name(const std::string& deployment, const std::string& state_dir) {
  std::uint32_t hash = 2166136261u;  // FNV-1a, 32 bits
  for (unsigned char c : state_dir) {
    hash ^= c;
    hash *= 16777619u;
  }
  char digits[9];
  std::snprintf(digits, sizeof digits, "%08x", hash);
  return "deployctl-" + deployment + "-" + digits;
}

std::optional<std::string> tree_cgroup_parent(const CgroupHost& host, std::string* why) {
  std::string dir;
  if (host.own_dir) {
    dir = *host.own_dir;  // a test tree, or an operator's choice: taken as it is
  } else if (auto path = own_cgroup_path(host.proc_self_cgroup, "")) {
    dir = host.v2_mount + *path;
    if (!on_cgroup2_fs(dir)) {
      *why = dir + " is not on a cgroup v2 file system";
      return std::nullopt;
    }
  } else {
    *why = "no cgroup v2 entry in /proc/self/cgroup";
    return std::nullopt;
  }
  if (!writable_dir(dir)) {
    *why = dir + " is not writable (cgroups not delegated)";
    return std::nullopt;
  }
  return dir;
}

void remove_deployment_cgroups(const std::string& deployment, const std::string& state_dir,
                               const std::vector<std::string>* only) {
  std::string why;
  const auto parent = tree_cgroup_parent(host_from_environment(), &why);
  if (!parent) return;
  const std::string name = deployment_cgroup_name(deployment, state_dir);
  struct stat st;
  TreeCgroups cgroups;
  if (stat((*parent + "/" + name).c_str(), &st) != 0 || !cgroups.open(*parent, name, &why)) {
    return;
  }
  std::error_code ec;
  std::vector<ReplicaCgroup> left;
  for (const auto& entry : std::filesystem::directory_iterator(cgroups.dir(), ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string id = entry.path().filename().string();
    if (only && std::find(only->begin(), only->end(), id) == only->end()) continue;
    if (auto cgroup = cgroups.find(id)) left.push_back(*cgroup);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    std::erase_if(left, [](const ReplicaCgroup& cgroup) {
      cgroup.kill_all();
      return cgroup.remove();
    });
    if (!left.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cgroups.close();
}

bool TreeCgroups::open(const std::string& parent, const std::string& name, std::string* why) {
  const std::string dir = parent + "/" + name;
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *why = "cannot create " + dir + ": " + std::strerror(errno);
    return false;
  }
  dir_ = dir;
  return true;
}

std::optional<ReplicaCgroup> TreeCgroups::prepare(const std::string& replica_id,
                                                  std::string* error) const {
  auto cgroup = ReplicaCgroup::create(MemoryMode::cgroup2, dir_, replica_id, MemoryLimits{}, error);
  if (!cgroup) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  while (!cgroup->fresh() && !cgroup->members().empty() &&
         std::chrono::steady_clock::now() < deadline) {
    cgroup->kill_all();  // an earlier run's tree: it must not share the new run's cgroup
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cgroup;
}

std::optional<ReplicaCgroup> TreeCgroups::find(const std::string& replica_id) const {
  struct stat st;
  if (stat(path_of(replica_id).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  std::string ignored;
  return ReplicaCgroup::create(MemoryMode::cgroup2, dir_, replica_id, MemoryLimits{}, &ignored);
}

void TreeCgroups::close() {
  if (dir_.empty()) return;
  rmdir(dir_.c_str());  // EBUSY while a replica's cgroup is left (logged by its owner)
  dir_.clear();
}

}  // namespace deployctl
