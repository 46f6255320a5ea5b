// The deployment's event stream (`deployctl events`, docs/cli.md): what happened, one event
// per line, kept in a bounded history by the supervisor and streamed live to followers.
// Wire form: one JSON object per event, {"seq", "time_ms", "kind", "service", "replica",
// "message", "lines"}.
//   kind: state (a replica's state changed), exit (its process ended: reason and the last
//   stderr lines), oom (killed for memory.max), probe (a health probe of a ready replica
//   failed), scale (a desired count changed), rollout (started, done, failed), reload,
//   pre_start (each pre-start step, then a reload's outcome), memory (a recycle for
//   memory.restart_above), log (the deployment core's own messages).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "json.h"

namespace deployctl {

struct DeploymentEvent {
  std::uint64_t seq = 0;     // 1, 2, ... for the supervisor's life
  std::int64_t time_ms = 0;  // unix time
  std::string kind;
  std::string service;  // empty: the deployment
  std::string replica;  // "web.1", or empty
  std::string message;
  std::vector<std::string> lines;  // exit: the last lines of stderr
  bool operator==(const DeploymentEvent&) const = default;
};

// The last kCapacity events; older ones are forgotten.
class EventHistory {
 public:
  static constexpr std::size_t kCapacity = 1000;
  // Numbers `event` and keeps it; returns the kept copy.
  const DeploymentEvent& add(DeploymentEvent event);
  const std::deque<DeploymentEvent>& events() const { return events_; }

 private:
  std::deque<DeploymentEvent> events_;
  std::uint64_t next_seq_ = 1;
};

json::Value event_json(const DeploymentEvent& event);
// nullopt if `value` is not an event object.
std::optional<DeploymentEvent> event_from_json(const json::Value& value);
// Now, in milliseconds since the epoch.
std::int64_t unix_time_ms();

// "2026-11-30T11:23:43.123Z exit web.1: signal 9 (SIGKILL) [signal]" and, per stderr line,
// "    web.1 | line"; ends with a newline.
std::string event_text(const DeploymentEvent& event);

}  // namespace deployctl
