// Where a deployment's state lives (edge: reads the environment).
#pragma once

#include <string>

namespace deployctl {

// The base directory holding one subdirectory per deployment:
// `override_dir` if non-empty, else $DEPLOYCTL_RUNTIME_DIR, else /run/deployctl for root,
// else $XDG_RUNTIME_DIR/deployctl, else /tmp/deployctl-UID.
std::string runtime_base(const std::string& override_dir);

struct StatePaths {
  std::string dir;       // <base>/<name>, mode 0700
  std::string socket;    // management socket, mode 0600
  std::string lock;      // flock'ed by the running supervisor
  std::string pid;       // the supervisor's pid
  std::string log;       // the detached supervisor's stdout/stderr
  std::string scale;     // persisted desired counts (scale.json)
  std::string logs;      // per-service log files (docs/logs.md); set by `up`, may be elsewhere
};

StatePaths state_paths(const std::string& base, const std::string& name);

}  // namespace deployctl
