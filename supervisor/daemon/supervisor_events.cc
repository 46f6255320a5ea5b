// The event stream (protocol/events.h): events derived from each handled event and the core's
// actions, kept in a bounded history and sent to `events -f` followers as they happen.
#include "commands.h"
#include "dbus_api.h"
#include "dbus_protocol.h"
#include "supervisor_state.h"

namespace deployctl {

std::map<std::string, Supervisor::ServiceMark> Supervisor::service_marks() const {
  std::map<std::string, ServiceMark> marks;
  for (const auto& [name, service] : core_.state().services) {
    marks[name].desired = service.desired;
  }
  return marks;
}

void Supervisor::record_events(const Event& event, const std::vector<Action>& actions,
                               const std::map<std::string, ServiceMark>& before) {
  auto who = [this](std::uint64_t serial, DeploymentEvent& out) {
    if (auto it = replicas_.find(serial); it != replicas_.end()) {
      out.replica = it->second->id;
      out.service = it->second->service;
    } else if (const ReplicaRecord* record = core_.replica(serial)) {
      out.replica = record->id;
      out.service = core_.service_of(serial)->settings.name;
    }
  };
  for (const auto& action : actions) {
    DeploymentEvent out{.time_ms = unix_time_ms()};
    if (action.kind == Action::Kind::transition) {
      out.kind = "state";
      out.message = std::string(state_name(action.before)) + " -> " + state_name(action.after) +
                    " (" + dbus::transition_reason(action.before, action.event, action.steps) + ")";
    } else if (action.kind == Action::Kind::replica &&
               action.step.kind == ReplicaAction::Kind::record_exit) {
      const auto& step = action.step;
      out.kind = step.reason == ExitReason::oom ? "oom" : "exit";
      out.message = describe_exit(step.status) + ", reason " +
                    reason_name(step.reason);
      if (event.kind == Event::Kind::exited && event.replica == action.replica) {
        out.lines = event.stderr_tail;
      }
    } else if (action.kind == Action::Kind::recycle_started ||
               action.kind == Action::Kind::recycle_gave_up) {
      out.kind = "memory";
      out.message = action.kind == Action::Kind::recycle_started
                        ? "above memory.restart_above (" + std::to_string(action.bytes) +
                              " bytes): replacing it"
                        : "its replacement for memory failed; it keeps serving";
    } else if (action.kind == Action::Kind::reload_applied) {
      out.kind = "reload";
      out.message = "applying the new spec";
    } else if (action.kind == Action::Kind::rollout_started) {
      out.kind = "rollout";
      out.service = action.service;
      out.message = "rollout started";
    } else if (action.kind == Action::Kind::rollout_ended) {
      out.kind = "rollout";
      out.service = action.service;
      out.message = action.ok ? "rollout done" : "rollout failed: " + action.message;
    } else if (action.kind == Action::Kind::log) {
      out.kind = "log";
      out.message = action.message;
    } else {
      continue;
    }
    if (action.replica) who(action.replica, out);
    publish_event(std::move(out));
  }
  for (const auto& [name, mark] : service_marks()) {
    auto was = before.find(name);
    const int desired_before = was != before.end() ? was->second.desired : 0;
    if (mark.desired != desired_before) {
      publish_event({.time_ms = unix_time_ms(),
                     .kind = "scale",
                     .service = name,
                     .message = "desired replicas " + std::to_string(desired_before) + " -> " +
                                std::to_string(mark.desired)});
    }
  }
}

void Supervisor::publish_event(DeploymentEvent event) {
  const DeploymentEvent& kept = events_.add(std::move(event));
  // State changes already have their signal, ReplicaStateChanged (docs/dbus.md).
  if (dbus_ && kept.kind != "state") dbus_->event(kept);
  if (followers_.empty()) return;
  json::Value line;
  line["event"] = event_json(kept);
  std::erase_if(followers_, [&line](const auto& follower) { return !follower->send(line); });
}

json::Value Supervisor::events_json() const {
  json::Array list;
  for (const auto& event : events_.events()) list.push_back(event_json(event));
  return list;
}

// {"command": "events", "follow": true}: {"ok": true}, then {"event": {...}} per event of the
// history and every one after it, until the client hangs up.
bool Supervisor::follow_events(const json::Value& request,
                               std::shared_ptr<ManagementStream> stream) {
  if (json::as_string(json::get(request, "command")) != "events" ||
      !json::as_bool(json::get(request, "follow"))) {
    return false;
  }
  std::erase_if(followers_, [](const auto& follower) { return !follower->open(); });
  if (followers_.size() >= kMaxFollowers) {
    stream->send(management_error("too many clients follow the events (" +
                                      std::to_string(kMaxFollowers) + "); try again later",
                                  kExitBusy));
    return true;
  }
  json::Value ok;
  ok["ok"] = true;
  if (!stream->send(ok)) return true;
  for (const auto& event : events_.events()) {
    json::Value line;
    line["event"] = event_json(event);
    if (!stream->send(line)) return true;
  }
  followers_.push_back(std::move(stream));
  return true;
}

}  // namespace deployctl
