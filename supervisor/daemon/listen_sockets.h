// Binding the spec's `listen` addresses once, in the supervisor (edge).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "spec.h"

namespace deployctl {

// A bound, listening TCP socket owned by the supervisor; replicas inherit it. The service's
// shared sockets are Supervisor::Service::sockets; with `sockets = "per-replica"` each replica
// has its own, held in Service::replica_sockets (replica_sockets.h) as ListenSockets too.
struct ListenSocket {
  ListenAddress address;
  int fd = -1;
  std::uint64_t replica = 0;  // a per-replica socket: its owner's serial (0: shared)
};

// Binds one address as below; `reuseport` adds SO_REUSEPORT (per-replica sockets). -1 and
// *error on failure.
int bind_listen_socket(const ListenAddress& address, bool reuseport, std::string* error);

// Binds every address (SO_REUSEADDR, TCP_NODELAY, close-on-exec, backlog SOMAXCONN). On failure
// closes what it opened and returns the error in *error ("cannot listen on 127.0.0.1:8000:
// Address in use").
std::vector<ListenSocket> bind_listen_sockets(const std::vector<ListenAddress>& addresses,
                                              std::string* error);

void close_listen_sockets(std::vector<ListenSocket>& sockets);

// Takes the open socket bound to `address` out of `sockets` (there its fd becomes -1).
std::optional<ListenSocket> take_listen_socket(std::vector<ListenSocket>& sockets,
                                               const ListenAddress& address);

}  // namespace deployctl
