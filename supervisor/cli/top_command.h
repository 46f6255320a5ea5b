// `deployctl top`: the live view (docs/cli.md). A thin terminal adapter over top_view.h: every
// second it asks the supervisor for its status and events (the existing management requests),
// samples the replicas' CPU time from /proc, and draws render_top's lines with ncurses; keys
// change the sort, the selection and the log view. Not a terminal: one plain-text snapshot.
#pragma once

#include <string>

#include "log_command.h"

namespace deployctl {

struct TopRequest {
  std::string name;    // the deployment's
  std::string socket;  // its supervisor's management socket
  LogsRequest logs;    // where the log tail of the selected replica is read (selector, lines set
                       // per use)
};

// Exit code per docs/cli.md: 0 (quit with q, or the snapshot printed), 3 (not running), 1.
int run_top(const TopRequest& request);

}  // namespace deployctl
