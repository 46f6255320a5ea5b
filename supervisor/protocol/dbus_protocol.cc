#include "dbus_protocol.h"

#include "commands.h"

namespace deployctl::dbus {

std::string escape_label(std::string_view deployment) {
  if (deployment.empty()) return "_";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string label;
  for (std::size_t i = 0; i < deployment.size(); ++i) {
    const char c = deployment[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (letter || (digit && i > 0)) {
      label += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      label += '_';
      label += kHex[byte >> 4];
      label += kHex[byte & 0xf];
    }
  }
  return label;
}

std::string bus_name(std::string_view deployment) {
  return std::string(kNamePrefix) + escape_label(deployment);
}

std::string object_path(std::string_view deployment) {
  return std::string(kPathPrefix) + escape_label(deployment);
}

std::string error_name(int exit_code) {
  const char* suffix = "Failed";
  switch (exit_code) {
    case kExitUsage: suffix = "InvalidArguments"; break;
    case kExitNotRunning: suffix = "NotRunning"; break;
    case kExitAlreadyRunning: suffix = "AlreadyRunning"; break;
    case kExitPermission: suffix = "PermissionDenied"; break;
    default: break;
  }
  return std::string(kErrorPrefix) + suffix;
}

namespace {

json::Value request(const char* command) {
  json::Value value;
  value["command"] = command;
  return value;
}

}  // namespace

json::Value status_request() { return request("status"); }
json::Value down_request() { return request("down"); }

json::Value scale_request(const std::map<std::string, std::uint32_t>& counts) {
  json::Value value = request("scale");
  json::Value& field = value["counts"];
  field = json::Object();
  for (const auto& [service, count] : counts) field[service] = count;
  return value;
}

json::Value restart_request(const std::vector<std::string>& services) {
  json::Value value = request("restart");
  json::Array names(services.begin(), services.end());
  value["services"] = std::move(names);
  return value;
}

json::Value renew_request(const std::vector<std::string>& services) {
  json::Value value = request("renew");
  value["services"] = json::Array(services.begin(), services.end());
  return value;
}

json::Value reload_request(const std::string& file) {
  json::Value value = request("reload");
  value["file"] = file;
  return value;
}

std::optional<ErrorReply> error_reply(const json::Value& response) {
  const json::Value* ok = json::find(response, "ok");
  if (ok && json::as_bool(*ok)) return std::nullopt;
  const json::Value* error = json::find(response, "error");
  const json::Value* exit = json::find(response, "exit");
  return ErrorReply{error_name(exit ? static_cast<int>(json::as_int(*exit, kExitFailed)) : kExitFailed),
                    error && error->is_string() ? json::as_string(*error)
                                                : "the supervisor gave no reason"};
}

std::string transition_reason(ReplicaState before, const ReplicaEvent& event,
                              const std::vector<ReplicaAction>& actions) {
  using Kind = ReplicaEvent::Kind;
  for (const auto& action : actions) {
    if (action.kind != ReplicaAction::Kind::record_exit) continue;
    std::string text = "exited: " + describe_exit(action.status);
    if (action.reason != ExitReason::exit && action.reason != ExitReason::signal) {
      text += std::string(" [") + reason_name(action.reason) + "]";
    }
    return text;
  }
  switch (event.kind) {
    case Kind::start: return "started";
    case Kind::spawned: return "spawned";
    case Kind::spawn_failed: return "spawn failed";
    case Kind::ready: return "ready";
    case Kind::unhealthy: return "health check failed";
    case Kind::protocol_error: return "control protocol violation";
    case Kind::drain: return "drain";
    case Kind::stop: return "stop";
    case Kind::exited: return "exited";
    case Kind::queue_empty: return "accept queue empty";
    case Kind::timer:
      if (before == ReplicaState::starting) return "not ready within health.start_period";
      if (before == ReplicaState::backoff || before == ReplicaState::crash_loop) {
        return "backoff elapsed";
      }
      return "timer";
  }
  return "?";
}

}  // namespace deployctl::dbus
