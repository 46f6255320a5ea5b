// ACME across an upgrade in place and a crash of the supervisor (docs/upgrade.md): the acme
// services' http_listen sockets, HTTP-01 listeners and renewal schedules are carried by the
// exec (the state document), or kept by the fd keeper and the replica record for a successor.
#include <signal.h>

#include "acme_carry.h"
#include "supervisor_state.h"

namespace deployctl {

json::Value Supervisor::acme_upgrade_state(std::vector<int>* fds) const {
  return acme_ ? acme_carried_json(acme_->carried(), fds) : json::Value::object();
}

// A lego run cannot be carried (its output pipe, its timeout): the upgrade waits for its end.
std::string Supervisor::acme_upgrade_refusal() const {
  for (const auto& service : spec_.services) {
    auto report = acme_ ? acme_->report(service.name) : std::nullopt;
    if (report && report->running) {
      return service.name + ": an ACME attempt (lego) is under way; try again once it ends";
    }
  }
  return "";
}

void Supervisor::keep_acme_sockets(std::map<std::string, int>& fds) const {
  if (!acme_) return;
  for (const auto& [service, carried] : acme_->carried()) {
    if (carried.http_fd >= 0) fds[acme_fd_name(service)] = carried.http_fd;
  }
}

void Supervisor::record_acme_listeners(std::vector<RecordedReplica>& live) const {
  if (!acme_) return;
  for (const auto& [service, carried] : acme_->carried()) {
    if (carried.listener <= 0) continue;
    if (auto entry = recorded_entry(acme_listener_id(service), carried.listener, SIGTERM)) {
      live.push_back(*entry);
    }
  }
}

}  // namespace deployctl
