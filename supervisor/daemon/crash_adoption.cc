#include "crash_adoption.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "acme_carry.h"
#include "deployment_state_json.h"
#include "leftovers.h"
#include "read_file.h"
#include "steering.h"

namespace deployctl {

namespace {

// How long a new `up` waits for the keeper to hand the fds over.
constexpr std::chrono::milliseconds kTakeOverLimit{3000};

bool holds(const HandedFds& fds, std::uint64_t serial) {
  for (const char* channel : {"control", "out", "err"}) {
    if (!fds.count(channel_fd_name(serial, channel))) return false;
  }
  return true;
}

std::chrono::milliseconds longest_stop(const Spec& spec) {
  Duration grace{0};
  for (const auto& service : spec.services) grace = std::max(grace, service.stop.timeout);
  return std::chrono::duration_cast<std::chrono::milliseconds>(grace);
}

}  // namespace

std::string adoption_record_path(const std::string& state_dir) { return state_dir + "/adopt.json"; }

std::string listen_fd_name(const std::string& service, std::size_t index) {
  return "listen " + service + " " + std::to_string(index);
}

std::string channel_fd_name(std::uint64_t serial, const char* channel) {
  return std::to_string(serial) + " " + channel;
}

std::string replica_socket_fd_name(std::uint64_t serial, const std::string& address) {
  return std::to_string(serial) + " socket " + address;
}

namespace {

// Takes the per-replica sockets of `address` out of `fds`: the recorded order, less the
// sockets the keeper no longer held (closed after the record), then any not recorded.
std::vector<CarriedSocket> take_group(HandedFds& fds, const std::vector<CarriedSocket>& recorded,
                                      const std::string& address) {
  const std::string suffix = " socket " + address;
  std::map<std::uint64_t, int> handed;
  for (auto it = fds.begin(); it != fds.end();) {
    const auto& name = it->first;
    const auto space = name.find(' ');
    if (!name.ends_with(suffix) || name.size() != space + suffix.size()) {
      ++it;
      continue;
    }
    handed[std::strtoull(name.c_str(), nullptr, 10)] = it->second;
    it = fds.erase(it);
  }
  GroupOrder order, still_open;
  for (const auto& socket : recorded) order.push_back(socket.owner);
  for (const auto& [owner, fd] : handed) still_open.push_back(owner);
  std::vector<CarriedSocket> group;
  for (std::uint64_t owner : recovered_order(order, still_open)) {
    group.push_back({owner, handed.at(owner)});
    handed.erase(owner);
  }
  for (const auto& [owner, fd] : handed) group.push_back({owner, fd});
  return group;
}

const std::vector<CarriedSocket>& recorded_group(const CarriedGroups& recorded,
                                                 const std::string& service,
                                                 const std::string& address) {
  static const std::vector<CarriedSocket> none;
  const auto in_service = recorded.find(service);
  if (in_service == recorded.end()) return none;
  const auto group = in_service->second.find(address);
  return group == in_service->second.end() ? none : group->second;
}

}  // namespace

std::optional<Adoption> take_over(const Spec& spec, const StatePaths& paths, std::string* why_not) {
  why_not->clear();
  const std::string record_path = replica_record_path(paths.dir);
  std::optional<RecordedReplica> keeper;
  std::vector<RecordedReplica> replicas;
  std::map<std::string, pid_t> listeners;  // acme service -> its HTTP-01 listener
  for (auto& leftover : find_leftovers(record_path)) {
    if (leftover.id == kKeeperId) {
      keeper = leftover;
    } else if (leftover.id.rfind(acme_listener_id(""), 0) == 0) {
      listeners[leftover.id.substr(acme_listener_id("").size())] = leftover.pid;
    } else {
      replicas.push_back(leftover);
    }
  }
  if (replicas.empty()) return std::nullopt;
  if (!keeper) {
    *why_not = "its fd keeper is gone too";
    return std::nullopt;
  }
  std::string error;
  FileRead file = read_file(adoption_record_path(paths.dir), kMaxStateBytes);
  auto record = file.ok() ? decode_state(file.text, &error) : std::nullopt;
  if (!record) {
    *why_not = "no usable adoption record" + (error.empty() ? "" : ": " + error);
    return std::nullopt;
  }
  auto fds = take_from_keeper(keeper_socket_path(paths.dir), keeper->pid, kTakeOverLimit, &error);
  if (!fds) {
    *why_not = error;
    return std::nullopt;
  }
  Adoption adoption{std::move(*record), {}, {}, std::move(*fds)};
  auto give_up = [&adoption, why_not](std::string why) -> std::optional<Adoption> {
    for (auto& [name, fd] : adoption.fds) close(fd);
    for (auto& [name, sockets] : adoption.listen) close_listen_sockets(sockets);
    for (auto& [service, groups] : adoption.replica_sockets) {
      for (auto& [address, sockets] : groups) {
        for (auto& socket : sockets) close(socket.fd);
      }
    }
    for (auto& [name, acme] : adoption.acme) close(acme.http_fd);
    *why_not = std::move(why);
    return std::nullopt;
  };
  std::set<std::uint64_t> alive;
  std::map<std::uint64_t, pid_t> pids;
  for (const auto& r : json::as_array(json::get(adoption.record.doc, "replicas"))) {
    const auto serial = static_cast<std::uint64_t>(json::as_int(json::get(r, "serial")));
    const auto pid = static_cast<pid_t>(json::as_int(json::get(r, "pid"), -1));
    const auto start = static_cast<unsigned long long>(json::as_int(json::get(r, "start_time")));
    if (pid > 1 && process_start_time(pid) == start && holds(adoption.fds, serial)) {
      alive.insert(serial);
      pids[serial] = pid;
    }
  }
  const bool same_spec =
      adoption.record.spec.name == spec.name && adoption.record.spec.services == spec.services;
  adoption.plan = plan_adoption(adoption.record.core, same_spec, alive);
  if (!adoption.plan.adopt) return give_up(adoption.plan.refusal);
  const CarriedGroups recorded =
      carried_groups_from_json(json::get(adoption.record.doc, "replica_sockets"));
  for (const auto& service : spec.services) {
    if (service.sockets == SocketMode::per_replica) {
      for (const auto& address : service.listen) {
        adoption.replica_sockets[service.name][address.text] = take_group(
            adoption.fds, recorded_group(recorded, service.name, address.text), address.text);
      }
      continue;  // no shared socket
    }
    for (std::size_t i = 0; i < service.listen.size(); ++i) {
      auto it = adoption.fds.find(listen_fd_name(service.name, i));
      if (it == adoption.fds.end()) {
        return give_up("the fd keeper had no socket for " + service.listen[i].text);
      }
      adoption.listen[service.name].push_back({service.listen[i], it->second});
      adoption.fds.erase(it);
    }
    if (service.tls && service.tls->acme) {
      auto it = adoption.fds.find(acme_fd_name(service.name));
      if (it == adoption.fds.end()) {
        return give_up("the fd keeper had no socket for " + service.tls->acme->http_listen.text);
      }
      auto listener = listeners.find(service.name);
      adoption.acme[service.name] = {
          it->second, listener == listeners.end() ? -1 : listener->second, false, {}, {}};
      adoption.fds.erase(it);
    }
  }
  std::vector<RecordedReplica> strays;  // running, recorded, but not taken over
  for (const auto& replica : replicas) {
    const bool adopted =
        std::any_of(adoption.plan.adopted.begin(), adoption.plan.adopted.end(),
                    [&](std::uint64_t serial) { return pids[serial] == replica.pid; });
    if (!adopted) strays.push_back(replica);
  }
  if (!strays.empty()) {
    stop_leftovers(record_path, strays, longest_stop(spec), /*others_adopted=*/true);
  }
  return adoption;
}

}  // namespace deployctl
