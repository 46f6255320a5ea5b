// `deployctl logs`: a deployment's log files, read with or without a running supervisor
// (docs/logs.md). Where they live: paths.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "spec.h"

namespace deployctl {

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
// The last request.lines lines (each ending in '\n') of the selected logs in time order, as
// `logs` prints them; empty with *error if there is no such log or the request is invalid.
std::vector<std::string> read_log_tail(const LogsRequest& request, std::string* error);

}  // namespace deployctl
