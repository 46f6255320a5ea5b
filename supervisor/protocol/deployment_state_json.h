// The deployment core's state as JSON and back (for a supervisor handing over to its successor).
// Times are steady-clock nanoseconds, durations milliseconds, enums their numeric values; the
// document carries "version": 1. Reading never throws: nullopt for anything malformed.
#pragma once

#include <optional>

#include "deployment_state.h"
#include "json.h"

namespace deployctl {

json::Value to_json(const DeploymentState& state);
std::optional<DeploymentState> deployment_state_from_json(const json::Value& value);

}  // namespace deployctl
