// ACME across an upgrade in place and a crash of the supervisor (docs/upgrade.md): the part of
// the upgrade's state document that carries each acme service (AcmeCarried, acme_manager.h),
// and the names its listener and socket go by in the crash record and the fd keeper.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "acme_manager.h"
#include "json.h"

namespace deployctl {

// {"web": {"http_fd": 7, "listener": 1234, "schedule": {...}, "report": {...}}}; each http_fd
// is appended to *fds (it must survive the exec).
json::Value acme_carried_json(const std::map<std::string, AcmeCarried>& carried,
                              std::vector<int>* fds);
// The inverse (listener_is_child true: the same process after the exec); unknown or missing
// fields read as "none".
std::map<std::string, AcmeCarried> acme_carried_from_json(const json::Value& doc);

// The id of a service's HTTP-01 listener in STATE/replicas.json (leftovers.h): stopped like a
// replica when nobody takes it over, replaced when a successor adopts the deployment.
std::string acme_listener_id(const std::string& service);
// The name its http_listen socket is kept under by the fd keeper.
std::string acme_fd_name(const std::string& service);

}  // namespace deployctl
