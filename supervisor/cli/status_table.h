// The `deployctl status` table, printed from the supervisor's status JSON (docs/cli.md).
#pragma once

#include "json.h"

namespace deployctl {

void print_status_table(const json::Value& status);

}  // namespace deployctl
