// A new `up` taking over the replicas of a crashed supervisor of the same deployment
// (docs/upgrade.md, "Crash of the supervisor"). The running supervisor keeps STATE/adopt.json
// (its spec text, the deployment core's state, each live replica's pid and start time) and its
// fd keeper holds the replicas' channels and the listen sockets under stable names. take_over()
// checks which recorded replicas still run, gets the fds back from the keeper and asks the core
// (plan_adoption) whether and what to adopt. Edge: files, /proc, the keeper's socket.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "acme_manager.h"
#include "adoption.h"
#include "fd_keeper.h"
#include "listen_sockets.h"
#include "paths.h"
#include "replica_sockets.h"
#include "spec.h"
#include "upgrade.h"

namespace deployctl {

// The record's format (the upgrade's state document, with fds named instead of numbered).
inline constexpr int kAdoptionRecordFormat = 1;

std::string adoption_record_path(const std::string& state_dir);  // STATE/adopt.json
// The names fds are kept under: "listen web 0", "7 control" (replica serial 7), "7 out", ...
std::string listen_fd_name(const std::string& service, std::size_t index);
std::string channel_fd_name(std::uint64_t serial, const char* channel);
// A per-replica socket: "7 socket 127.0.0.1:8000".
std::string replica_socket_fd_name(std::uint64_t serial, const std::string& address);

// What a new supervisor resumes from.
struct Adoption {
  CarriedState record;  // doc: "replicas" [{serial, pid, start_time, ...}]
  AdoptionPlan plan;
  std::map<std::string, std::vector<ListenSocket>> listen;  // the spec's, from the keeper
  HandedFds fds;  // the adopted replicas' channels (owned until the supervisor takes them)
  CarriedGroups replica_sockets;  // from the keeper, in recovered group order (steering.h)
  // Each acme service's http_listen socket (from the keeper) and the crashed supervisor's
  // HTTP-01 listener still serving it, if recorded and alive: replaced by the successor.
  std::map<std::string, AcmeCarried> acme;
};

// With the deployment's lock held, before anything is bound: the adoption of the replicas a
// crashed supervisor left, or nullopt with *why_not ("" when there is nothing to adopt). On
// nullopt nothing was taken over; the caller stops the leftovers as before (the keeper too:
// it is recorded among them). Recorded replicas that run but are not adopted are stopped here.
std::optional<Adoption> take_over(const Spec& spec, const StatePaths& paths, std::string* why_not);

}  // namespace deployctl
