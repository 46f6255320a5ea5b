// deploy-server's lifecycle: open the listening sockets, serve, report readiness (control
// protocol or sd_notify), drain on DRAIN=1, control-socket EOF, SIGTERM or SIGINT.
#pragma once

#include "server_options.h"

namespace deployctl::server {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsage = 2;

// Runs until drained. Returns the process exit code; a second SIGTERM/SIGINT ends the
// process at once by that signal.
int run_worker(const Options& options);

}  // namespace deployctl::server
