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
  const DeploymentState& state = core_.state();
  snapshot.state = state.phase == Phase::finished ? "stopping" : phase_name(state.phase);
  for (const ServiceState* service : in_file_order(state)) {
    if (service->removed && service->replicas.empty()) continue;
    snapshot.services.push_back({service->settings.name,
                                 static_cast<std::uint32_t>(service->desired),
                                 static_cast<std::uint32_t>(ready_count(*service))});
  }
  dbus_->publish(snapshot);
}

void Supervisor::announce_transition(const Replica& replica, const Action& transition) {
  if (!dbus_) return;
  dbus_->replica_state_changed(replica.id, state_name(transition.before),
                               state_name(transition.after),
                               dbus::transition_reason(transition.before, transition.event,
                                                       transition.steps));
}

}  // namespace deployctl
