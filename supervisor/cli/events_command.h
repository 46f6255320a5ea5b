// `deployctl events`: prints the supervisor's event history, or follows it (-f).
#pragma once

#include <functional>

#include "json.h"

namespace deployctl {

// For call_supervisor's on_line: prints each {"event": ...} line as text (or a JSON line with
// `as_json`) and flushes; false (stop) on a line that is not an event.
std::function<bool(const json::Value&)> event_printer(bool as_json);

// Prints the "events" list of a response; the exit code (kExitFailed if malformed).
int print_event_list(const json::Value& response, bool as_json);

}  // namespace deployctl
