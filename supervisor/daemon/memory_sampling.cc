#include "memory_sampling.h"

#include <fstream>
#include <sstream>
#include <string>

#include "cgroup.h"
#include "process.h"

namespace deployctl {

std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> tree;
  if (root <= 0 || !resident_bytes(root)) return tree;
  tree.push_back(root);
  for (std::size_t next = 0; next < tree.size() && tree.size() < 4096; ++next) {
    for (pid_t child : child_pids(tree[next])) tree.push_back(child);
  }
  return tree;
}

std::optional<std::uint64_t> process_pss(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::stringstream text;
  text << file.rdbuf();
  if (auto kib = keyed_value(text.str(), "Pss:")) return *kib * 1024;
  auto rss = resident_bytes(pid);
  if (!rss) return std::nullopt;
  return static_cast<std::uint64_t>(*rss);
}

std::optional<std::uint64_t> tree_pss(pid_t root) {
  auto tree = process_tree(root);
  if (tree.empty()) return std::nullopt;
  std::uint64_t total = 0;
  for (pid_t pid : tree) total += process_pss(pid).value_or(0);
  return total;
}

}  // namespace deployctl
