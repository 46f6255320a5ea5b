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

// `deployctl resume --state-fd N --previous-exe-fd M | --rolled-back WHY`: the supervisor after
// an upgrade in place (docs/upgrade.md) carries on from the state in fd N. If it cannot, it
// re-executes the previous binary (fd M) with the same state and WHY (never returns then).
struct ResumeArguments {
  int state_fd = -1;
  int previous_exe_fd = -1;  // the binary that wrote the state; -1 in that binary itself
  std::string rolled_back;   // set when the next binary could not resume
};
int run_resumed(const ResumeArguments& arguments);

}  // namespace deployctl
