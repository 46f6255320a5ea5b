// Internal to export/: rewriting a command that takes its listening socket from deployctl
// (fd 3, LISTEN_FDS) into one that binds by itself, for the servers we know.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "spec.h"

namespace deployctl::exporter {

struct BindRewrite {
  std::vector<std::string> command;
  std::string server;   // "uvicorn", ...; empty when the program is not one we know
  std::string problem;  // why the rewrite is incomplete; empty when it is complete
};

// For uvicorn, gunicorn, hypercorn, daphne and deploy-server (run directly or as
// `python3 -m NAME`): drops "--fd N" / "--bind fd://N" and, unless the command already binds
// an address itself, adds the flags that bind every port in `ports` on `host`. Other
// programs are returned unchanged, with a problem when they use an "--fd"/"fd://" argument or
// ports is not empty (they would wait for a socket nobody passes).
BindRewrite bind_by_itself(const std::vector<std::string>& command,
                           const std::vector<std::uint16_t>& ports, const std::string& host);

}  // namespace deployctl::exporter
