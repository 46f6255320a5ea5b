// Per-replica sockets (`sockets = "per-replica"`, docs/design-notes.md): the Supervisor's side.
// The core decides (steer_targets, the quiescing state); ReplicaSockets binds and attaches.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "crash_adoption.h"
#include "steering.h"
#include "supervisor_state.h"

namespace deployctl {

// Shared: every socket of the service. Per-replica: the replica's own (bound on first use).
std::vector<int> Supervisor::listen_fds(const Replica& replica, std::string* error) {
  Service& service = *services_.at(replica.service);
  std::vector<int> fds;
  if (replica.spec->sockets != SocketMode::per_replica) {
    for (const auto& socket : service.sockets) fds.push_back(socket.fd);
    return fds;
  }
  const ListenAddress& address = replica.spec->listen.front();
  auto& group = service.replica_sockets[address.text];
  if (!group) group = std::make_unique<ReplicaSockets>(io_, address);
  const int fd = group->open(replica.serial, error);
  if (fd >= 0) fds.push_back(fd);
  return fds;
}

int Supervisor::own_socket(const Replica& replica) const {
  for (const auto& [text, group] : services_.at(replica.service)->replica_sockets) {
    if (int fd = group->find(replica.serial); fd >= 0) return fd;
  }
  return -1;
}

// After every transition of a service's replica: each group sends new connections to the
// core's targets only.
void Supervisor::steer(const std::string& name) {
  const auto service = services_.find(name);
  const auto state = core_.state().services.find(name);
  if (service == services_.end() || service->second->replica_sockets.empty()) return;
  const auto targets = state == core_.state().services.end() ? std::vector<std::uint64_t>{}
                                                             : steer_targets(state->second);
  for (auto& [text, group] : service->second->replica_sockets) {
    std::string error;
    if (!group->steer(targets, &error)) spdlog::error("{}", error);
  }
}

// SteerAway: the transition to quiescing has steered already; report once its queue is empty.
void Supervisor::steer_away(const ReplicaPtr& replica) {
  steer(replica->service);
  spdlog::info(
      "{} (pid {}): new connections steered away; stopping it once its accept queue "
      "is empty",
      replica->id, replica->pid);
  for (auto& [text, group] : services_.at(replica->service)->replica_sockets) {
    if (group->find(replica->serial) < 0) continue;
    group->when_queue_empty(replica->serial,
                            [this, replica] { replica_event(replica, Event::Kind::queue_empty); });
  }
}

// Retire: the replica is gone; nothing will accept from its socket again.
void Supervisor::release_socket(const Replica& replica) {
  const auto service = services_.find(replica.service);
  if (service == services_.end()) return;
  auto& groups = service->second->replica_sockets;
  for (auto it = groups.begin(); it != groups.end();) {
    // The keeper's copy first: the socket leaves the kernel's group only with its last copy,
    // and close() below takes it as gone.
    if (keeper_ && it->second->find(replica.serial) >= 0) {
      keeper_->drop_now(replica_socket_fd_name(replica.serial, it->first));
    }
    if (const auto dropped = it->second->close(replica.serial)) {
      spdlog::warn("{}: {} queued connection(s) on its own socket were reset at its exit",
                   replica.id, dropped);
    }
    it = it->second->sockets().empty() ? groups.erase(it) : std::next(it);
  }
}

// Every group's sockets in group order (what an upgrade or the adoption record carries).
CarriedGroups Supervisor::replica_socket_groups() const {
  CarriedGroups groups;
  for (const auto& [name, service] : services_) {
    for (const auto& [text, group] : service->replica_sockets) {
      auto& carried = groups[name][text];
      for (const auto& socket : group->sockets()) carried.push_back({socket.replica, socket.fd});
    }
  }
  return groups;
}

// After an upgrade in place or a crash: the groups again, in the order carried. A socket whose
// owner the core does not know is closed as at a retire; then each group is steered afresh
// (the program attached to it still runs until then).
void Supervisor::adopt_replica_sockets(const CarriedGroups& groups) {
  for (const auto& [name, addresses] : groups) {
    const auto service = services_.find(name);
    for (const auto& [text, sockets] : addresses) {
      const ListenAddress* address = nullptr;
      if (service != services_.end()) {
        for (const auto& candidate : service->second->spec->listen) {
          if (candidate.text == text) address = &candidate;
        }
      }
      if (!address) {  // no longer in the spec: nothing will use them
        for (const auto& socket : sockets) ::close(socket.fd);
        continue;
      }
      auto& group = service->second->replica_sockets[text];
      group = std::make_unique<ReplicaSockets>(io_, *address);
      for (const auto& socket : sockets) group->adopt(socket.owner, socket.fd);
      for (const auto& socket : sockets) {
        if (!core_.replica(socket.owner)) group->close(socket.owner);
      }
      if (group->sockets().empty()) service->second->replica_sockets.erase(text);
    }
    steer(name);
  }
}

}  // namespace deployctl
