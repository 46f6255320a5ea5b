// The supervisor's side of its D-Bus API (dbus_api.h): opening it, and what it publishes.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "dbus_api.h"
#include "dbus_protocol.h"
#include "supervisor_state.h"

namespace deployctl {

// System bus when root, else the session bus; without one (or with --no-dbus) the supervisor
// runs as usual.
void Supervisor::start_dbus() {
  if (!dbus_enabled_) return;
  const bool root = geteuid() == 0;
  const char* bus = root ? "system" : "session";
  std::string error;
  dbus_ = DbusApi::open(
      io_, root ? DbusApi::Bus::system : DbusApi::Bus::session, spec_.name,
      [this](const json::Value& request, ManagementServer::Reply reply) {
        handle_request(request, std::move(reply));
      },
      &error);
  if (!dbus_) {
    spdlog::warn("D-Bus API off: {} bus: {} (use --no-dbus to run without it)", bus, error);
    return;
  }
  spdlog::info("D-Bus API on the {} bus as {}", bus, dbus_->bus_name());
  publish_dbus();
}

void Supervisor::publish_dbus() {
  if (!dbus_) return;
  DbusSnapshot snapshot;
  snapshot.state = phase_ == Phase::starting  ? "starting"
                   : phase_ == Phase::running ? "running"
                                              : "stopping";
  for (const auto& [name, service] : services_) {
    if (service->removed && service->replicas.empty()) continue;
    ServiceCounts counts{name, static_cast<std::uint32_t>(service->desired), 0};
    for (const auto& [index, replica] : service->replicas) {
      if (replica->machine.state() == ReplicaState::ready) ++counts.ready;
    }
    snapshot.services.push_back(std::move(counts));
  }
  dbus_->publish(snapshot);
}

void Supervisor::announce_transition(const Replica& replica, ReplicaState before,
                                     const ReplicaEvent& event,
                                     const std::vector<ReplicaAction>& actions) {
  if (!dbus_) return;
  dbus_->replica_state_changed(replica.id, state_name(before), state_name(replica.machine.state()),
                               dbus::transition_reason(before, event, actions));
}

}  // namespace deployctl
