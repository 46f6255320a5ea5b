// libFuzzer target: the JSON a supervisor reads from its predecessor (the deployment state of an
// upgrade, events) and from the management socket. Any bytes: no crash, no exception; what parses
// dumps to text that parses to the same value; a state or an event that is accepted survives
// its own round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "deployment_state_json.h"
#include "events.h"
#include "json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace deployctl;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  json::ParseError error;
  auto value = json::parse(input, &error);
  if (!value) {
    if (error.message.empty()) std::abort();  // a refusal always says why
    return 0;
  }
  auto again = json::parse(json::dump(*value));
  if (!again || *again != *value) std::abort();
  if (auto state = deployment_state_from_json(*value)) {
    auto back = deployment_state_from_json(*json::parse(json::dump(to_json(*state))));
    if (!back || !(*back == *state)) std::abort();
  }
  if (auto event = event_from_json(*value)) {
    auto back = event_from_json(event_json(*event));
    if (!back || !(*back == *event)) std::abort();
  }
  // The non-throwing readers on whatever shape arrived.
  (void)json::as_string(json::get(*value, "request"));
  (void)json::as_int(json::get(*value, "replicas"), -1);
  for (const auto& item : json::as_array(json::get(*value, "services"))) (void)json::as_object(item);
  return 0;
}
