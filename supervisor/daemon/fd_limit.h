// The supervisor's file descriptor limit (RLIMIT_NOFILE). Edge: getrlimit/setrlimit.
#pragma once

#include <cstdint>

namespace deployctl {

// Raises this process's soft limit to its hard limit (as systemd does for itself) and returns
// the new soft limit. Replicas and pre-start steps keep the soft limit deployctl was started
// with (spawn_process restores it in the child): programs using select() break above 1024.
std::uint64_t raise_fd_limit();

// The current soft limit.
std::uint64_t fd_limit();

}  // namespace deployctl
