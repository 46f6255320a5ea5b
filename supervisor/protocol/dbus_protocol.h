// deployctl's D-Bus API (docs/dbus.md): names, and the translation between D-Bus calls and the
// management protocol of commands.h, so both APIs are served by one request handler. Pure.
//
// One object per deployment, so several deployments can share a bus:
//   well-known name  org.deployctl.Supervisor1.<label>
//   object path      /org/deployctl/Supervisor1/<label>
//   interface        org.deployctl.Supervisor1
// where <label> is the deployment name escaped as sd-bus escapes path labels: every byte
// outside [A-Za-z0-9], and a leading digit, becomes _xx (two lowercase hex digits).
//
// Methods (all answered when the operation is complete, like the socket API):
//   Status() -> s status         the object `deployctl status --json` prints
//   Scale(a{su} counts)          {"command":"scale","counts":{...}}
//   Restart(as services)         {"command":"restart","services":[...]}; none named: all
//   Reload(s file)               {"command":"reload","file":...}; "": the running spec's file
//   Renew(as services) -> as     {"command":"renew","services":[...]}; none named: every
//                                tls.acme service; answered once lego runs for each, with the
//                                services it runs for (the outcome: status, Event signals)
//   Down()                       {"command":"down"}
// Properties (PropertiesChanged on change): Name s, State s, DesiredReplicas u,
//   ReadyReplicas u (totals), DesiredByService a{su}, ReadyByService a{su}.
// Signals: ReplicaStateChanged(s replica, s old_state, s new_state, s reason);
//   Event(t seq, x time_ms, s kind, s service, s replica, s message, as lines) for every event
//   of the event stream (events.h) except kind "state".
// Errors: org.deployctl.Supervisor1.Error.<name of the CLI's exit code>, same message.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json.h"
#include "replica_machine.h"

namespace deployctl::dbus {

inline constexpr std::string_view kInterface = "org.deployctl.Supervisor1";
inline constexpr std::string_view kNamePrefix = "org.deployctl.Supervisor1.";
inline constexpr std::string_view kPathPrefix = "/org/deployctl/Supervisor1/";
inline constexpr std::string_view kErrorPrefix = "org.deployctl.Supervisor1.Error.";

// A non-empty label valid both as a bus-name element and as an object-path element.
std::string escape_label(std::string_view deployment);
std::string bus_name(std::string_view deployment);
std::string object_path(std::string_view deployment);

// The D-Bus error name for a CLI exit code (docs/cli.md): 1 Failed, 2 InvalidArguments,
// 3 NotRunning, 4 AlreadyRunning, 5 PermissionDenied; any other code: Failed.
std::string error_name(int exit_code);

json::Value status_request();
json::Value scale_request(const std::map<std::string, std::uint32_t>& counts);
json::Value restart_request(const std::vector<std::string>& services);
json::Value reload_request(const std::string& file);
json::Value renew_request(const std::vector<std::string>& services);
json::Value down_request();

struct ErrorReply {
  std::string name;
  std::string message;
};
// The `reason` of ReplicaStateChanged for a transition out of `before` on `event`: how the
// process ended for an exit (e.g. "exited: signal 9 (SIGKILL)"), else what happened.
std::string transition_reason(ReplicaState before, const ReplicaEvent& event,
                              const std::vector<ReplicaAction>& actions);

// The D-Bus error for a management response, or nullopt if it reports success.
std::optional<ErrorReply> error_reply(const json::Value& response);

}  // namespace deployctl::dbus
