// What the metrics read from the kernel (edge): a process's CPU time and the supervisor's own
// process_* facts from /proc, and a listening socket's accept queue from TCP_INFO.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "metrics_text.h"

namespace deployctl {

// User + system CPU seconds of `pid` and of its reaped children (/proc/PID/stat).
std::optional<double> process_cpu_seconds(pid_t pid);

// The calling process's process_* metrics.
ProcessMetrics own_process_metrics();

// A listening TCP socket's accept queue: on Linux, TCP_INFO of a listener reports the queued
// connections in tcpi_unacked and the backlog in tcpi_sacked. nullopt if not a TCP listener.
struct AcceptQueue {
  std::uint32_t length = 0;
  std::uint32_t limit = 0;
};
std::optional<AcceptQueue> accept_queue(int fd);

}  // namespace deployctl
