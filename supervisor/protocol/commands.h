// The one table of deployctl's commands: it drives the CLI's parsing and help, and names the
// operations the supervisor serves on its management socket (and, later, D-Bus).
//
// Management protocol (CLI <-> supervisor): one JSON object per line over the unix socket
// STATE/control.sock. Request: {"command": NAME, ...arguments}. Response: {"ok": true, ...}
// or {"ok": false, "error": TEXT, "exit": CODE}. A request may take time (scale, down): the
// response comes when the operation is complete.
//   status                     -> {"ok":true, "status": <status object, see docs/cli.md>}
//   events                     -> {"ok":true, "events": [<event>...]} (the history, oldest first)
//   events {"follow": true}    -> {"ok":true}, then {"event": <event>} per line, the history
//                                 first, then live until the client hangs up (events.h)
//   metrics                    -> {"ok":true, "metrics": <Prometheus text exposition>}
//   scale {"counts":{S:N,...}} -> {"ok":true} once every service has its count
//   restart {"services":[S..]}  -> {"ok":true} once every named service (all: none named) rolled
//   reload {"file": PATH}      -> {"ok":true} once the new spec is applied (see docs/cli.md)
//   upgrade {"binary": PATH}   -> {"ok":true, "pid", "version", "upgrades", "upgrade_failures"}
//                                 once PATH passed its checks; the supervisor then re-executes
//                                 PATH in place (docs/upgrade.md); status shows the outcome
//   down                       -> {"ok":true, "pid": N} once every replica is gone
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "deployment.h"
#include "json.h"

namespace deployctl {

// Stable exit codes of the CLI (docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,
  kExitUsage = 2,
  kExitNotRunning = 3,
  kExitAlreadyRunning = 4,
  kExitPermission = 5,
  kExitBusy = 6,     // refused: another command (rollout, reload, start, stop) is under way
  kExitTimeout = 7,  // the CLI gave up waiting for the supervisor's answer (--timeout)
};

// The exit code of a reply the deployment core decided.
int exit_code_of(ReplyCode code);

struct CommandInfo {
  std::string_view name;
  std::string_view usage;
  std::string_view summary;
  bool served_by_daemon;  // true: the CLI sends it to the running supervisor
};

std::span<const CommandInfo> commands();

// {"ok": false, "error": message, "exit": exit_code}
json::Value management_error(const std::string& message, int exit_code);
const CommandInfo* find_command(std::string_view name);

}  // namespace deployctl
