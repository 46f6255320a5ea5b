// Memory of a process tree from /proc (edge), for the sampling mode and for `status`.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace deployctl {

// `root` and its live descendants (through /proc/PID/task/TID/children); empty if root is gone.
std::vector<pid_t> process_tree(pid_t root);

// Proportional set size of one process (/proc/PID/smaps_rollup), else its RSS; nullopt if gone.
std::optional<std::uint64_t> process_pss(pid_t pid);

// Sum of process_pss over process_tree(root); nullopt if root is gone.
std::optional<std::uint64_t> tree_pss(pid_t root);

}  // namespace deployctl
