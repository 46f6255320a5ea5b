// The `deployctl status` table, printed from the supervisor's status JSON (docs/cli.md).
#pragma once

#include <cstdint>
#include <string>

#include "json.h"

namespace deployctl {

// "45s", "3m2s", "2h5m", "1d3h".
std::string human_duration(std::int64_t ms);

void print_status_table(const json::Value& status);

}  // namespace deployctl
