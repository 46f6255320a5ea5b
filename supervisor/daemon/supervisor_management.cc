#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <sstream>

#include "asio.h"
#include "commands.h"
#include "load.h"
#include "log_writer.h"
#include "pre_start.h"
#include "rollout.h"
#include "scale_planner.h"
#include "spec_diff.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;
using Kind = ReplicaEvent::Kind;
using Act = ReplicaAction::Kind;

// ---- management API -------------------------------------------------------------------------

void Supervisor::check_waiters() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (auto response = it->check()) {
      auto reply = std::move(it->reply);
      it = waiters_.erase(it);
      reply(*response);
    } else {
      ++it;
    }
  }
}

void Supervisor::handle_request(const json::Value& request, ManagementServer::Reply reply) {
  const auto* field = request.find("command");
  const std::string name = field ? field->as_string() : "";
  const CommandInfo* command = find_command(name);
  if (!command || !command->served_by_daemon) {
    reply(management_error(field ? "unknown command '" + name + "'"
                                 : "the request names no \"command\"", kExitUsage));
    return;
  }
  if (name == "status") {
    json::Value response;
    response["ok"] = true;
    response["status"] = status_json();
    reply(response);
  } else if (name == "scale") {
    handle_scale(request, std::move(reply));
  } else if (name == "restart") {
    handle_restart(request, std::move(reply));
  } else if (name == "reload") {
    const auto* file = request.find("file");
    handle_reload(file && !file->as_string().empty() ? file->as_string() : spec_.path,
                  std::move(reply));
  } else if (name == "down") {
    spdlog::info("down requested; stopping {}", spec_.name);
    stopped_by_request_ = true;
    down_replies_.push_back(std::move(reply));
    begin_shutdown();
  }
}

void Supervisor::handle_scale(const json::Value& request, ManagementServer::Reply reply) {
  if (phase_ != Phase::running) {
    reply(management_error(spec_.name + " is " +
                             (phase_ == Phase::starting ? "still starting" : "stopping") +
                             "; scale it once it is running",
                         kExitBusy));
    return;
  }
  if (rollout_running()) {
    reply(management_error("a rollout is in progress; scale once it is done", kExitBusy));
    return;
  }
  const auto* counts = request.find("counts");
  if (!counts || !counts->is_object() || counts->as_object().empty()) {
    reply(management_error("scale needs counts, e.g. web=4", kExitUsage));
    return;
  }
  std::vector<std::pair<Service*, int>> changes;
  for (const auto& [name, value] : counts->as_object()) {
    auto it = services_.find(name);
    if (it == services_.end()) {
      reply(management_error("no service '" + name + "' in " + spec_.name, kExitUsage));
      return;
    }
    std::int64_t count = value.as_int(-1);
    if (!value.is_number() || count < 0 || count > 1000) {
      reply(management_error("replica count for '" + name + "' must be 0..1000", kExitUsage));
      return;
    }
    changes.emplace_back(it->second.get(), static_cast<int>(count));
  }
  Duration longest{0};
  std::vector<std::string> names;
  for (auto [service, count] : changes) {
    spdlog::info("scaling {} from {} to {}", service->spec->name, service->desired, count);
    service->desired = count;
    longest = std::max(longest, service->spec->health.start_period + service->spec->stop.timeout);
    names.push_back(service->spec->name);
  }
  persist_scale();
  for (auto [service, count] : changes) apply_scale(*service);

  const auto deadline = Clock::now() + longest + std::chrono::seconds(5);
  auto check = [this, names, deadline]() -> std::optional<json::Value> {
    for (const auto& name : names) {
      auto result = settled(*services_.at(name));
      if (!result) {
        if (Clock::now() < deadline) return std::nullopt;
        return management_error("timed out waiting for " + name + " to reach " +
                                    std::to_string(services_.at(name)->desired) +
                                    " ready replicas",
                                kExitFailed);
      }
      if (!result->find("ok")->as_bool()) return result;
    }
    json::Value done;
    done["ok"] = true;
    return done;
  };
  waiters_.push_back({check, std::move(reply)});
  auto timer = std::make_shared<asio::steady_timer>(io_, deadline);
  timer->async_wait([this, timer](boost::system::error_code ec) {
    if (!ec) check_waiters();
  });
  check_waiters();
}

bool Supervisor::rollout_running() const {
  for (const auto& [name, service] : services_) {
    if (service->rollout && service->rollout->state == Rollout::State::running) {
      return true;
    }
  }
  return false;
}

void Supervisor::handle_restart(const json::Value& request, ManagementServer::Reply reply) {
  if (phase_ != Phase::running) {
    reply(management_error(spec_.name + " is not running yet (or stopping); try again", kExitBusy));
    return;
  }
  if (rollout_running()) {
    reply(management_error("a rollout is already in progress", kExitBusy));
    return;
  }
  std::vector<std::string> names;
  if (const auto* list = request.find("services"); list && list->is_array()) {
    for (const auto& item : list->as_array()) names.push_back(item.as_string());
  }
  if (names.empty()) {
    for (const auto& [name, service] : services_) names.push_back(name);
  }
  for (const auto& name : names) {
    if (!services_.count(name)) {
      reply(management_error("no service '" + name + "' in " + spec_.name, kExitUsage));
      return;
    }
  }
  for (const auto& name : names) {
    Service& service = *services_.at(name);
    spdlog::info("{}: rolling restart of {} replicas (max_surge {}, max_unavailable {})", name,
                 service.desired, service.spec->rollout.max_surge,
                 service.spec->rollout.max_unavailable);
    ++service.generation;
    service.rollout.emplace();
  }
  waiters_.push_back({[this, names]() -> std::optional<json::Value> {
                        for (const auto& name : names) {
                          const auto& rollout = services_.at(name)->rollout;
                          if (rollout->state == Rollout::State::failed) {
                            return management_error(rollout->error, kExitFailed);
                          }
                          if (rollout->state == Rollout::State::running) return std::nullopt;
                        }
                        json::Value done;
                        done["ok"] = true;
                        return done;
                      },
                      std::move(reply)});
  after_events();
}

std::optional<json::Value> Supervisor::settled(const Service& service) const {
  if (service.rollout && service.rollout->state == Rollout::State::failed) {
    return management_error(service.rollout->error, kExitFailed);
  }
  if (service.rollout && service.rollout->state == Rollout::State::running) {
    return std::nullopt;
  }
  int ready = 0, active = 0;
  for (const auto& [index, replica] : service.replicas) {
    if (replica->machine.retiring()) return std::nullopt;
    ++active;
    auto state = replica->machine.state();
    if (state == ReplicaState::ready) ++ready;
    if (!replica->machine.ever_ready() && replica->last_exit &&
        (state == ReplicaState::backoff || state == ReplicaState::crash_loop ||
         state == ReplicaState::failed)) {
      const auto& exit = *replica->last_exit;
      return management_error(replica->id + " exited before it became ready (" +
                                  describe_exit(exit.status.code, exit.status.signal) +
                                  "); see deployctl status",
                              kExitFailed);
    }
  }
  if (ready != service.desired || active != service.desired) return std::nullopt;
  json::Value done;
  done["ok"] = true;
  return done;
}

void Supervisor::handle_reload(const std::string& path, ManagementServer::Reply reply) {
  if (phase_ != Phase::running || pre_start_ || rollout_running()) {
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
  Spec next = std::move(*loaded.spec);
  if (next.name != spec_.name) {
    reply(management_error(path + ": name: a running deployment's name cannot change (it is '" +
                               spec_.name + "')", kExitUsage));
    return;
  }
  // New or changed sockets are bound before anything changes, so a busy port rejects the reload.
  for (const auto& service : next.services) {
    const ServiceSpec* old = spec_.find_service(service.name);
    for (const auto& address : service.listen) {
      bool held = old && std::find(old->listen.begin(), old->listen.end(), address) != old->listen.end();
      if (held) continue;
      std::string error;
      auto probe = bind_listen_sockets({address}, &error);
      close_listen_sockets(probe);
      if (!error.empty()) {
        reply(management_error(error, kExitFailed));
        return;
      }
    }
  }
  spdlog::info("reloading {} from {}", spec_.name, path);
  sd_notify(0, "RELOADING=1");
  // systemd's reload protocol: RELOADING=1 now, READY=1 when done (whatever the outcome).
  auto shared_reply = std::make_shared<ManagementServer::Reply>(
      [this, reply = std::move(reply)](const json::Value& response) {
        reload_finished();
        reply(response);
      });
  auto shared_next = std::make_shared<Spec>(std::move(next));
  pre_start_ = std::make_unique<PreStartRunner>(
      io_, children_, shared_next->pre_start,
      [this](const std::string& step, const std::string& line, bool is_stderr) {
        print_pre_start_line(step, line, is_stderr);
        if (logs_) logs_->pre_start_line(step, line, is_stderr);
      },
      [this, shared_reply, shared_next](PreStartResult result) {
        asio::post(io_, [this] { pre_start_.reset(); });
        if (!result.ok) {
          std::string message = result.message + "; nothing was changed";
          for (const auto& line : result.last_lines) message += "\n  pre_start." + result.step + " | " + line;
          (*shared_reply)(management_error(message, kExitFailed));
          return;
        }
        if (phase_ != Phase::running) {
          (*shared_reply)(management_error("the deployment stopped during the reload", kExitFailed));
          return;
        }
        apply_reload(std::move(*shared_next), std::move(*shared_reply));
      });
  pre_start_->start();
}

void Supervisor::reload_finished() { sd_notify(0, "READY=1"); }

void Supervisor::apply_reload(Spec next, ManagementServer::Reply reply) {
  for (auto it = services_.begin(); it != services_.end();) {  // drop what earlier reloads removed
    it = it->second->removed && it->second->replicas.empty() ? services_.erase(it) : std::next(it);
  }
  SpecDiff diff = diff_specs(spec_, next);
  if (logs_) logs_->set_limits({next.logs.max_size, next.logs.keep});
  if (next.logs.dir != spec_.logs.dir) {
    spdlog::warn("reload: logs.dir changed; log files stay in {} until the next up", logs_ ? logs_->dir() : "");
  }
  spec_ = std::move(next);
  std::vector<std::string> touched;
  for (const auto& name : diff.removed) {
    Service& service = *services_.at(name);
    spdlog::info("reload: removing service {}", name);
    service.removed = true;
    service.desired = 0;
    apply_scale(service);
  }
  for (const auto& service_spec : spec_.services) {
    const auto& name = service_spec.name;
    bool added = std::count(diff.added.begin(), diff.added.end(), name) > 0;
    bool rolled = std::count(diff.rolled.begin(), diff.rolled.end(), name) > 0;
    bool rescaled = std::count(diff.rescaled.begin(), diff.rescaled.end(), name) > 0;
    if (!added && !rolled && !rescaled) continue;
    touched.push_back(name);
    if (added) {
      spdlog::info("reload: adding service {}", name);
      std::string error;
      auto sockets = bind_listen_sockets(service_spec.listen, &error);
      Service& service = add_service(service_spec, std::move(sockets));
      apply_scale(service);
      continue;
    }
    Service& service = *services_.at(name);
    if (rolled) {
      // Sockets still listed keep their fds (and their queued connections); new ones are bound.
      std::vector<ListenSocket> sockets;
      for (const auto& address : service_spec.listen) {
        auto same = std::find_if(service.sockets.begin(), service.sockets.end(),
                                 [&](const ListenSocket& s) { return s.address == address; });
        if (same != service.sockets.end()) {
          sockets.push_back(*same);
          same->fd = -1;
        } else {
          std::string error;
          auto bound = bind_listen_sockets({address}, &error);
          sockets.insert(sockets.end(), bound.begin(), bound.end());
        }
      }
      close_listen_sockets(service.sockets);  // replicas keep their inherited copies
      service.sockets = std::move(sockets);
      spdlog::info("reload: {} changed; rolling its replicas", name);
      service.spec = std::make_shared<const ServiceSpec>(service_spec);
      service.desired = service_spec.replicas;
      ++service.generation;
      service.rollout.emplace();
    } else {
      spdlog::info("reload: {} scales to {}", name, service_spec.replicas);
      service.spec = std::make_shared<const ServiceSpec>(service_spec);
      service.desired = service_spec.replicas;
      apply_scale(service);
    }
  }
  persist_scale();
  std::vector<std::string> removed = diff.removed;
  waiters_.push_back({[this, touched, removed]() -> std::optional<json::Value> {
                        for (const auto& name : removed) {
                          auto it = services_.find(name);
                          if (it != services_.end() && !it->second->replicas.empty()) {
                            return std::nullopt;
                          }
                        }
                        for (const auto& name : touched) {
                          auto it = services_.find(name);
                          if (it == services_.end()) continue;  // removed by a later reload
                          auto result = settled(*it->second);
                          if (!result || !result->find("ok")->as_bool()) return result;
                        }
                        json::Value done;
                        done["ok"] = true;
                        return done;
                      },
                      std::move(reply)});
  after_events();
}

json::Value Supervisor::status_json() const {
  const auto now = Clock::now();
  json::Value status;
  status["name"] = spec_.name;
  status["pid"] = static_cast<long long>(getpid());
  status["state"] = phase_ == Phase::starting ? "starting"
                    : phase_ == Phase::running ? "running"
                                               : "stopping";
  status["uptime_ms"] = ms_between(started_at_, now);
  status["memory_mode"] = mode_name(memory_setup_.mode);
  json::Array services;
  for (const auto& [name, service] : services_) {
    if (service->removed && service->replicas.empty()) continue;
    json::Value entry;
    entry["name"] = name;
    entry["desired"] = service->desired;
    json::Array listen;
    for (const auto& socket : service->sockets) listen.push_back(socket.address.text);
    entry["listen"] = std::move(listen);
    int ready = 0;
    json::Array replicas;
    for (const auto& [index, replica] : service->replicas) {
      const auto state = replica->machine.state();
      if (state == ReplicaState::ready) ++ready;
      json::Value r;
      r["id"] = replica->id;
      r["index"] = index;
      const bool alive = replica->pid > 0;
      r["pid"] = alive ? json::Value(static_cast<long long>(replica->pid)) : json::Value();
      r["state"] = state_name(state);
      Health health = service->spec->health.kind == HealthKind::none ? Health::none
                      : replica->health && state != ReplicaState::starting
                          ? replica->health->health()
                          : Health::unknown;
      r["health"] = health_name(health);
      r["uptime_ms"] = alive ? json::Value(ms_between(replica->spawned_at, now)) : json::Value();
      r["restarts"] = replica->machine.restarts();
      auto rss = alive ? resident_bytes(replica->pid) : std::nullopt;
      r["rss_bytes"] = rss ? json::Value(*rss) : json::Value();
      r["memory"] = memory_json(*replica);
      r["status"] = replica->status_text.empty() ? json::Value() : json::Value(replica->status_text);
      r["requests"] = replica->requests ? json::Value(*replica->requests) : json::Value();
      json::Value last_exit;
      if (const auto& exit = replica->last_exit) {
        last_exit["code"] = exit->status.code ? json::Value(*exit->status.code) : json::Value();
        last_exit["signal"] = exit->status.signal ? json::Value(*exit->status.signal) : json::Value();
        last_exit["reason"] = reason_name(exit->reason);
        last_exit["ago_ms"] = ms_between(exit->at, now);
        json::Array lines;
        for (const auto& line : exit->stderr_tail) lines.push_back(line);
        last_exit["stderr"] = std::move(lines);
      }
      r["last_exit"] = std::move(last_exit);
      replicas.push_back(std::move(r));
    }
    entry["ready"] = ready;
    entry["rollout"] = !service->rollout ? json::Value()
                       : service->rollout->state == Rollout::State::running ? "running"
                       : service->rollout->state == Rollout::State::done    ? "done"
                                                                                     : "failed";
    entry["replicas"] = std::move(replicas);
    services.push_back(std::move(entry));
  }
  status["services"] = std::move(services);
  return status;
}

// ---- persisted scale ------------------------------------------------------------------------

void Supervisor::load_persisted_scale() {
  std::ifstream file(paths_.scale);
  if (!file) return;
  std::stringstream text;
  text << file.rdbuf();
  auto saved = json::parse(text.str());
  if (!saved || !saved->is_object()) return;
  for (auto& [name, service] : services_) {
    const json::Value* entry = saved->find(name);
    if (!entry) continue;
    const json::Value* spec_count = entry->find("spec");
    const json::Value* desired = entry->find("desired");
    // A changed spec wins over a count set by hand for the old one.
    if (spec_count && desired && spec_count->as_int(-1) == service->spec->replicas) {
      service->desired = static_cast<int>(std::clamp<std::int64_t>(desired->as_int(0), 0, 1000));
    }
  }
}

void Supervisor::persist_scale() const {
  json::Value saved;
  for (const auto& [name, service] : services_) {
    json::Value entry;
    entry["spec"] = service->spec->replicas;
    entry["desired"] = service->desired;
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
