#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "acme_manager.h"
#include "asio.h"
#include "commands.h"
#include "fd_budget.h"
#include "fd_limit.h"
#include "load.h"
#include "log_writer.h"
#include "pre_start.h"
#include "read_file.h"
#include "spec_diff.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;

// ---- management API -------------------------------------------------------------------------

std::uint64_t Supervisor::add_request(std::string command, ManagementServer::Reply reply) {
  const std::uint64_t id = next_request_++;
  requests_[id] = {std::move(command), std::move(reply)};
  return id;
}

void Supervisor::handle_request(const json::Value& request, ManagementServer::Reply reply) {
  const std::string name = json::as_string(json::get(request, "command"));
  const CommandInfo* command = find_command(name);
  if (!command || !command->served_by_daemon) {
    reply(management_error(json::find(request, "command") ? "unknown command '" + name + "'"
                                                          : "the request names no \"command\"",
                           kExitUsage));
    return;
  }
  if (name == "status") {
    json::Value response;
    response["ok"] = true;
    response["status"] = status_json();
    reply(response);
  } else if (name == "events") {
    json::Value response;
    response["ok"] = true;
    response["events"] = events_json();
    reply(response);
  } else if (name == "metrics") {
    json::Value response;
    response["ok"] = true;
    response["metrics"] = metrics_text();
    reply(response);
  } else if (name == "scale") {
    handle_scale(request, std::move(reply));
  } else if (name == "restart") {
    handle_restart(request, std::move(reply));
  } else if (name == "renew") {
    handle_renew(request, std::move(reply));
  } else if (name == "reload") {
    const std::string& file = json::as_string(json::get(request, "file"));
    handle_reload(!file.empty() ? file : spec_.path,
                  std::move(reply));
  } else if (name == "upgrade") {
    handle_upgrade(json::as_string(json::get(request, "binary")), std::move(reply));
  } else if (name == "down") {
    enqueue({Event{.kind = Event::Kind::down, .request = add_request(name, std::move(reply))}});
  }
}

// Counts that are not whole numbers become -1, which the core rejects as out of range.
void Supervisor::handle_scale(const json::Value& request, ManagementServer::Reply reply) {
  Event scale{.kind = Event::Kind::scale, .request = add_request("scale", std::move(reply))};
  scale.fd_limit = fd_limit();
  if (const auto* counts = json::find(request, "counts"); counts && counts->is_object()) {
    for (const auto& [name, value] : json::as_object(*counts)) {
      scale.counts.emplace_back(name, json::as_int(value, -1));
    }
  }
  enqueue({std::move(scale)});
}

void Supervisor::handle_restart(const json::Value& request, ManagementServer::Reply reply) {
  Event restart{.kind = Event::Kind::restart, .request = add_request("restart", std::move(reply))};
  if (const auto* list = json::find(request, "services"); list && list->is_array()) {
    for (const auto& item : json::as_array(*list)) restart.services.push_back(json::as_string(item));
  }
  enqueue({std::move(restart)});
}

// Checks and binds before anything changes: a bad spec or a busy port refuses the reload.
void Supervisor::handle_reload(const std::string& path, ManagementServer::Reply reply) {
  if (core_.state().phase != Phase::running || pre_start_ || !reloads_.empty() ||
      core_.rollout_running()) {
    reply(management_error(spec_.name + " is busy (starting, stopping, reloading or rolling "
                           "out); try again once it is done", kExitBusy));
    return;
  }
  LoadResult loaded = load_spec_file(path);
  if (!loaded.spec) {
    std::string message;
    for (const auto& error : loaded.errors) message += (message.empty() ? "" : "\n") + error.to_string();
    reply(management_error(message, kExitUsage));
    return;
  }
  auto pending = std::make_unique<PendingReload>();
  pending->next = std::move(*loaded.spec);
  if (pending->next.name != spec_.name) {
    reply(management_error(path + ": name: a running deployment's name cannot change (it is '" +
                               spec_.name + "')", kExitUsage));
    return;
  }
  // A reload that adds replicas must fit the fd limit as `up` and `scale` must (fd_budget.h).
  if (auto error = fd_limit_error("reload: " + path, fds_needed(pending->next), fd_limit())) {
    reply(management_error(*error + "; nothing was changed", kExitFailed));
    return;
  }
  for (const auto& service : pending->next.services) {
    if (service.sockets == SocketMode::per_replica) continue;  // its replicas bind their own
    const ServiceSpec* old = spec_.find_service(service.name);
    for (const auto& address : service.listen) {
      if (old && std::count(old->listen.begin(), old->listen.end(), address)) continue;
      if (holds_socket(address)) continue;  // handed over by adopt_reload
      std::string error;
      auto bound = bind_listen_sockets({address}, &error);
      if (!error.empty()) {
        for (auto& [name, sockets] : pending->bound) close_listen_sockets(sockets);
        reply(management_error("reload refused: " + error + " (services." + service.name +
                                   ".listen); nothing was changed", kExitFailed));
        return;
      }
      auto& sockets = pending->bound[service.name];
      sockets.insert(sockets.end(), bound.begin(), bound.end());
    }
  }
  if (const std::string problem = tls_reload_problem(pending->next); !problem.empty()) {
    for (auto& [name, sockets] : pending->bound) close_listen_sockets(sockets);
    reply(management_error("reload refused: " + problem + "; nothing was changed", kExitUsage));
    return;
  }
  const std::uint64_t id = add_request("reload", std::move(reply));
  const auto& steps = pending->next.pre_start;
  reloads_[id] = std::move(pending);
  spdlog::info("reloading {} from {}", spec_.name, path);
  sd_notify(0, "RELOADING=1");
  pre_start_ = std::make_unique<PreStartRunner>(
      io_, children_, steps,
      [this](const std::string& step, const std::string& line, bool is_stderr) {
        print_pre_start_line(step, line, is_stderr);
        if (logs_) logs_->pre_start_line(step, line, is_stderr);
      },
      [this, id](PreStartResult result) {
        asio::post(io_, [this] { pre_start_.reset(); });
        record_pre_start(result.steps);
        publish_event({.time_ms = unix_time_ms(), .kind = "pre_start",
                       .message = result.ok ? "the reload's pre-start steps succeeded"
                                            : result.message});
        if (!result.ok) {
          std::string message = result.message + "; nothing was changed";
          for (const auto& line : result.last_lines) message += "\n  pre_start." + result.step + " | " + line;
          this->reply(reply_action(id, ReplyCode::failed, message));
          return;
        }
        reload_acme(id);
      });
  pre_start_->start();
}

void Supervisor::queue_reload(std::uint64_t request) {
  const Spec& next = reloads_.at(request)->next;
  Event reload{.kind = Event::Kind::reload, .request = request};
  reload.diff = diff_specs(spec_, next);
  for (const auto& service : next.services) reload.next.push_back(ServiceSettings::from(service));
  enqueue({std::move(reload)});
}

// The core applies the reload: the new spec and sockets become the daemon's, before the
// actions that spawn from them.
void Supervisor::adopt_reload(std::uint64_t request) {
  auto node = reloads_.extract(request);
  if (node.empty()) return;
  PendingReload& pending = *node.mapped();
  for (auto it = services_.begin(); it != services_.end();) {  // what earlier reloads removed
    const auto& core_services = core_.state().services;
    auto in_core = core_services.find(it->first);
    const bool gone = in_core == core_services.end() ||
                      (in_core->second.removed && in_core->second.replicas.empty());
    if (gone) close_listen_sockets(it->second->sockets);
    it = gone ? services_.erase(it) : std::next(it);
  }
  if (logs_) logs_->set_limits({pending.next.logs.max_size, pending.next.logs.keep});
  if (pending.next.logs.dir != spec_.logs.dir) {
    spdlog::warn("reload: logs.dir changed; log files stay in {} until the next up", logs_ ? logs_->dir() : "");
  }
  const SpecDiff diff = diff_specs(spec_, pending.next);
  spec_ = std::move(pending.next);
  auto listed = [](const std::vector<std::string>& names, const std::string& name) {
    return std::count(names.begin(), names.end(), name) > 0;
  };
  // Each changed service's sockets: its own that it still lists, else the one a service that
  // no longer lists the address hands over (a rename), else the one bound for this reload.
  std::map<std::string, std::vector<ListenSocket>> adopted;
  for (const auto& service_spec : spec_.services) {
    const auto& name = service_spec.name;
    if (!listed(diff.added, name) && !listed(diff.rolled, name) && !listed(diff.rescaled, name)) {
      continue;
    }
    auto& sockets = adopted[name];
    for (const auto& address : service_spec.listen) {
      std::optional<ListenSocket> socket;
      if (auto own = services_.find(name); own != services_.end()) {
        socket = take_listen_socket(own->second->sockets, address);
      }
      if (!socket) socket = take_released_socket(address);
      if (!socket) socket = take_listen_socket(pending.bound[name], address);
      if (socket) sockets.push_back(*socket);
    }
  }
  for (auto& [name, sockets] : adopted) {
    auto& service = services_[name];
    if (!service) service = std::make_unique<Service>();
    service->spec = std::make_shared<const ServiceSpec>(*spec_.find_service(name));
    close_listen_sockets(service->sockets);  // replicas keep their inherited copies
    service->sockets = std::move(sockets);
  }
  // A removed service stops accepting now; its draining replicas keep their inherited copies,
  // so the port is refused once the last of them is gone.
  for (auto& [name, service] : services_) {
    if (!spec_.find_service(name)) close_listen_sockets(service->sockets);
  }
  for (auto& [name, sockets] : pending.bound) close_listen_sockets(sockets);  // not adopted
  if (acme_) acme_->commit_reload(spec_);
  watch_tls();
}

// The supervisor's socket on `address` held by a service whose spec (already the new one) no
// longer lists it, taken out of that service; nullopt if none.
std::optional<ListenSocket> Supervisor::take_released_socket(const ListenAddress& address) {
  for (auto& [name, service] : services_) {
    const ServiceSpec* now = spec_.find_service(name);
    if (now && std::count(now->listen.begin(), now->listen.end(), address)) continue;
    if (auto socket = take_listen_socket(service->sockets, address)) return socket;
  }
  return std::nullopt;
}

// True if a service of the running spec holds a socket on `address` (a reload that gives it to
// another service hands it over instead of binding it again).
bool Supervisor::holds_socket(const ListenAddress& address) const {
  for (const auto& [name, service] : services_) {
    for (const auto& socket : service->sockets) {
      if (socket.fd >= 0 && socket.address == address) return true;
    }
  }
  return false;
}

void Supervisor::drop_reload(std::uint64_t request) {
  auto node = reloads_.extract(request);
  if (node.empty()) return;
  for (auto& [name, sockets] : node.mapped()->bound) close_listen_sockets(sockets);
  if (acme_) acme_->cancel_reload();  // not applied: the staged ACME jobs go
}

json::Value Supervisor::status_json() const {
  const auto now = time_.now();
  const DeploymentState& state = core_.state();
  json::Value status;
  status["name"] = spec_.name;
  status["pid"] = static_cast<long long>(getpid());
  status["state"] = state.phase == Phase::finished ? "stopping" : phase_name(state.phase);
  status["uptime_ms"] = ms_between(state.started_at, now);
  status["memory_mode"] = mode_name(memory_setup_.mode);
  status["supervisor"] = supervisor_json();
  json::Array services;
  for (const ServiceState* in_order : in_file_order(state)) {
    const ServiceState& service = *in_order;
    const std::string& name = service.settings.name;
    if (service.removed && service.replicas.empty()) continue;
    json::Value entry;
    entry["name"] = name;
    entry["desired"] = service.desired;
    json::Array listen;
    if (auto it = services_.find(name); it != services_.end()) {
      for (const auto& socket : it->second->sockets) listen.push_back(socket.address.text);
    }
    entry["listen"] = std::move(listen);
    json::Array replicas;
    for (const auto& [index, replica] : service.replicas) {
      replicas.push_back(replica_json(replica, service, now));
    }
    entry["ready"] = ready_count(service);
    entry["rollout"] = !service.rollout ? json::Value()
                       : service.rollout->status == RolloutState::Status::running ? "running"
                       : service.rollout->status == RolloutState::Status::done    ? "done"
                                                                                  : "failed";
    entry["replicas"] = std::move(replicas);
    if (auto tls = tls_json(name); !tls.is_null()) entry["tls"] = std::move(tls);
    services.push_back(std::move(entry));
  }
  status["services"] = std::move(services);
  return status;
}

// The core's view of a replica joined with the daemon's (pid, health, memory, output).
json::Value Supervisor::replica_json(const ReplicaRecord& record, const ServiceState& service,
                                     TimePoint now) const {
  auto it = replicas_.find(record.serial);
  const Replica* runtime = it != replicas_.end() ? it->second.get() : nullptr;
  const auto state = record.machine.state;
  json::Value r;
  r["id"] = record.id;
  r["index"] = record.index;
  const bool alive = runtime && runtime->pid > 0;
  r["pid"] = alive ? json::Value(static_cast<long long>(runtime->pid)) : json::Value();
  r["adopted"] = alive && runtime->pidfd != nullptr;  // from a crashed supervisor: not our child
  r["state"] = state_name(state);
  const bool checked = runtime && runtime->health;
  const Health health =
      shown_health(state, alive, !service.settings.ready_when_running,
                   checked ? std::optional(runtime->health->health()) : std::nullopt);
  r["health"] = health_name(health);
  r["uptime_ms"] = alive ? json::Value(ms_between(runtime->spawned_at, now)) : json::Value();
  r["restarts"] = record.machine.restarts;
  r["dropped_messages"] = runtime ? runtime->messages.dropped() : 0;
  auto rss = alive ? resident_bytes(runtime->pid) : std::nullopt;
  r["rss_bytes"] = rss ? json::Value(*rss) : json::Value();
  r["memory"] = memory_json(record, runtime);
  const bool has_status = runtime && !runtime->status_text.empty();
  r["status"] = has_status ? json::Value(runtime->status_text) : json::Value();
  const bool has_requests = runtime && runtime->requests;
  r["requests"] = has_requests ? json::Value(*runtime->requests) : json::Value();
  json::Value last_exit;
  if (const auto& exit = record.last_exit) {
    last_exit["code"] = exit->status.code ? json::Value(*exit->status.code) : json::Value();
    last_exit["signal"] = exit->status.signal ? json::Value(*exit->status.signal) : json::Value();
    last_exit["reason"] = reason_name(exit->reason);
    last_exit["ago_ms"] = ms_between(exit->at, now);
    json::Array lines;
    for (const auto& line : exit->stderr_tail) lines.push_back(line);
    last_exit["stderr"] = std::move(lines);
  }
  r["last_exit"] = std::move(last_exit);
  return r;
}

// ---- persisted scale ------------------------------------------------------------------------

std::map<std::string, int> Supervisor::load_persisted_scale() const {
  std::map<std::string, int> counts;
  FileRead file = read_file(paths_.scale, kMaxStateBytes);
  if (!file.ok()) return counts;
  auto saved = json::parse(file.text);
  if (!saved || !saved->is_object()) return counts;
  for (const auto& service : spec_.services) {
    const json::Value* entry = json::find(*saved, service.name);
    if (!entry) continue;
    const json::Value* spec_count = json::find(*entry, "spec");
    const json::Value* desired = json::find(*entry, "desired");
    // A changed spec wins over a count set by hand for the old one.
    if (spec_count && desired && json::as_int(*spec_count, -1) == service.replicas) {
      counts[service.name] =
          static_cast<int>(std::clamp<std::int64_t>(json::as_int(*desired, 0), 0, 1000));
    }
  }
  return counts;
}

void Supervisor::persist_scale() const {
  json::Value saved;
  for (const auto& [name, service] : core_.state().services) {
    json::Value entry;
    entry["spec"] = service.settings.spec_replicas;
    entry["desired"] = service.desired;
    saved[name] = std::move(entry);
  }
  const std::string temporary = paths_.scale + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << json::dump(saved) << "\n";
    if (!file) return;
  }
  std::rename(temporary.c_str(), paths_.scale.c_str());
}

}  // namespace deployctl
