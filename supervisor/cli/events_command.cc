#include "events_command.h"

#include <cstdio>

#include "commands.h"
#include "events.h"

namespace deployctl {
namespace {

bool print_event(const json::Value& value, bool as_json) {
  auto event = event_from_json(value);
  if (!event) return false;
  const std::string text = as_json ? json::dump(event_json(*event)) + "\n" : event_text(*event);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  return true;
}

}  // namespace

std::function<bool(const json::Value&)> event_printer(bool as_json) {
  return [as_json](const json::Value& line) {
    const json::Value* event = json::find(line, "event");
    return event && print_event(*event, as_json);
  };
}

int print_event_list(const json::Value& response, bool as_json) {
  const json::Value* events = json::find(response, "events");
  if (!events || !events->is_array()) {
    std::fprintf(stderr, "deployctl: malformed events from the supervisor\n");
    return kExitFailed;
  }
  for (const auto& event : json::as_array(*events)) {
    if (!print_event(event, as_json)) {
      std::fprintf(stderr, "deployctl: malformed event from the supervisor\n");
      return kExitFailed;
    }
  }
  return kExitOk;
}

}  // namespace deployctl
