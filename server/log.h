// One-line diagnostics on stderr, prefixed "deploy-server[<pid>]: ". Each line is one write(2),
// so lines from replicas sharing a pipe do not interleave.
#pragma once

#include <string_view>

namespace deployctl::server {

void log_line(std::string_view message);

}  // namespace deployctl::server
