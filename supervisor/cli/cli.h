// The deployctl command line: parses arguments, runs `up`/`validate` locally and sends the
// other commands to the running supervisor. Returns a stable exit code (commands.h).
#pragma once

namespace deployctl {

int run_cli(int argc, char** argv);

}  // namespace deployctl
