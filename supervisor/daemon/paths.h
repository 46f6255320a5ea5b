// Where a deployment's state lives (edge: reads the environment).
#pragma once

#include <string>

#include "spec.h"

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

// What decides the log directory, in order of precedence (pure; the caller reads the
// environment): --log-dir or $DEPLOYCTL_LOG_DIR -> DIR/NAME; the spec's logs.dir; with the
// runtime directory overridden (--runtime-dir, $DEPLOYCTL_RUNTIME_DIR) -> STATE/logs, so a
// private instance keeps everything together; root -> /var/log/deployctl/NAME; else STATE/logs.
struct LogDirInputs {
  std::string log_dir_option;  // --log-dir, else $DEPLOYCTL_LOG_DIR, else empty
  std::string spec_dir;        // logs.dir of the spec, if known
  bool runtime_dir_overridden = false;
  bool root = false;
  std::string name;
  std::string state_dir;
};
std::string resolve_log_dir(const LogDirInputs& inputs);

// The same, reading the environment and the effective uid.
std::string log_dir_for(const std::string& log_dir_flag, const std::string& runtime_dir_flag,
                        const LogsSpec* spec_logs, const std::string& name,
                        const std::string& state_dir);

}  // namespace deployctl
