// Where a deployment's log files live, and `deployctl logs` (docs/logs.md).
#pragma once

#include <optional>
#include <string>

#include "spec.h"

namespace deployctl {

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

struct LogsRequest {
  std::string selector;  // SERVICE, SERVICE.N, pre_start[.STEP] or empty (every log)
  bool follow = false;
  std::size_t lines = 10;
  std::string file;  // the spec, when name is empty
  std::string name;
  std::string log_dir_flag;
  std::string runtime_dir_flag;
};
// Prints the last lines, then (follow) what is written next until killed. Exit code per
// docs/cli.md: 0, 1 (no log file), 2 (usage or invalid spec).
int run_logs(const LogsRequest& request);

}  // namespace deployctl
