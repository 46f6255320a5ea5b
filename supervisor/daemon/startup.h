// Start-up of the supervisor daemon (`deployctl up`): the state directory and its lock, the
// listening sockets, the pre-start steps, detaching (`-d`), the pid file, becoming a child
// subreaper, and running the Supervisor's event loop until the deployment stops.
#pragma once

#include <string>

#include "spec.h"

namespace deployctl {

struct UpOptions {
  std::string runtime_dir;  // --runtime-dir (empty: the default, see paths.h)
  std::string log_dir;      // --log-dir
  bool detach = false;      // -d: run in the background once every replica is ready
  bool dbus = true;         // export the D-Bus API
};

// Runs the deployment described by `spec` until it stops. Returns the CLI's exit code.
int run_up(const Spec& spec, const UpOptions& options);

}  // namespace deployctl
