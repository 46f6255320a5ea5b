// The management requests of the deployment core: scale, restart, reload, down, and when each
// is answered.
#include <algorithm>

#include "deployment.h"
#include "fd_budget.h"

namespace deployctl {

namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

void Deployment::scale(const Event& event) {
  if (s_.phase != Phase::running) {
    reply(event.request, ReplyCode::busy,
          s_.name + " is " + (s_.phase == Phase::starting ? "still starting" : "stopping") +
              "; scale it once it is running");
    return;
  }
  if (rollout_running()) {
    reply(event.request, ReplyCode::busy, "a rollout is in progress; scale once it is done");
    return;
  }
  if (event.counts.empty()) {
    reply(event.request, ReplyCode::usage, "scale needs counts, e.g. web=4");
    return;
  }
  for (const auto& [name, count] : event.counts) {
    if (!s_.services.count(name)) {
      reply(event.request, ReplyCode::usage, "no service '" + name + "' in " + s_.name);
      return;
    }
    if (count < 0 || count > 1000) {
      reply(event.request, ReplyCode::usage, "replica count for '" + name + "' must be 0..1000");
      return;
    }
  }
  if (auto error = fd_error(event)) {
    reply(event.request, ReplyCode::failed, *error);
    return;
  }
  Duration longest{0};
  Waiter waiter{.request = event.request, .kind = Waiter::Kind::scale};
  for (const auto& [name, count] : event.counts) {
    ServiceState& service = s_.services.at(name);
    log(LogLevel::info, "scaling " + name + " from " + std::to_string(service.desired) + " to " +
                            std::to_string(count));
    service.desired = static_cast<int>(count);
    const auto& policy = service.settings.policy;
    longest = std::max(longest, policy.start_period + policy.stop.timeout);
    waiter.services.push_back(name);
  }
  out_.push_back({.kind = Action::Kind::persist_scale});
  for (const auto& [name, count] : event.counts) apply_scale(s_.services.at(name));
  waiter.deadline = now_ + longest + std::chrono::seconds(5);
  out_.push_back({.kind = Action::Kind::arm_deadline, .at = *waiter.deadline});
  s_.waiters.push_back(std::move(waiter));
}

// Why the counts of a scale `event` do not fit its fd_limit (0: not checked), else nullopt.
// Services not named keep their desired count; one still draining after a reload counts what
// it still runs.
std::optional<std::string> Deployment::fd_error(const Event& event) const {
  if (event.fd_limit == 0) return std::nullopt;
  std::uint64_t needed = kFdsFixed + 1;  // + pre_start.log, as fds_needed()
  std::string what;
  for (const auto& [name, service] : s_.services) {
    int count = service.removed ? static_cast<int>(service.replicas.size()) : service.desired;
    for (const auto& [scaled, to] : event.counts) {
      if (scaled != name) continue;
      count = static_cast<int>(to);
      what += (what.empty() ? "" : " ") + name + "=" + std::to_string(to);
    }
    const auto sockets =
        listen_fds(service.settings.listen.size(), service.settings.policy.steered, count);
    needed += service_fds(sockets, service.settings.exec_probe, count);
  }
  return fd_limit_error("scale " + what, needed, event.fd_limit);
}

void Deployment::restart(const Event& event) {
  if (s_.phase != Phase::running) {
    reply(event.request, ReplyCode::busy,
          s_.name + " is not running yet (or stopping); try again");
    return;
  }
  if (rollout_running()) {
    reply(event.request, ReplyCode::busy, "a rollout is already in progress");
    return;
  }
  std::vector<std::string> names = event.services;
  if (names.empty()) {
    for (const auto& [name, service] : s_.services) names.push_back(name);
  }
  for (const auto& name : names) {
    if (!s_.services.count(name)) {
      reply(event.request, ReplyCode::usage, "no service '" + name + "' in " + s_.name);
      return;
    }
  }
  for (const auto& name : names) begin_rollout(name, s_.services.at(name), "rolling restart");
  s_.waiters.push_back(
      {.request = event.request, .kind = Waiter::Kind::restart, .services = std::move(names)});
}

// Replaces every replica of the service within its rollout bounds (a new generation).
void Deployment::begin_rollout(const std::string& name, ServiceState& service,
                               const std::string& why) {
  const auto& bounds = service.settings.rollout;
  log(LogLevel::info, name + ": " + why + " of " + std::to_string(service.desired) +
                          " replicas (max_surge " + std::to_string(bounds.max_surge) +
                          ", max_unavailable " + std::to_string(bounds.max_unavailable) + ")");
  ++service.generation;
  open_rollout(name, service);
}

// The daemon saw new TLS files that load: every replica must serve them. Replicas started
// from now on load them anyway, so a rollout under way is restarted toward a new generation
// (its new replicas may hold the old files). While starting or stopping nothing is rolled.
void Deployment::certificate_changed(const Event& event) {
  for (const auto& name : event.services) {
    auto it = s_.services.find(name);
    if (it == s_.services.end() || it->second.removed) continue;
    if (s_.phase != Phase::running) {
      log(LogLevel::warn, name + ": the certificate changed while " + phase_name(s_.phase) +
                              "; not rolled (run `deployctl restart " + name + "` once up)");
      continue;
    }
    begin_rollout(name, it->second, "new certificate: rolling restart");
  }
}

// The spec was validated, its pre_start steps ran and its new sockets are bound (daemon).
void Deployment::reload(const Event& event) {
  if (s_.phase != Phase::running) {
    reply(event.request, ReplyCode::failed, "the deployment stopped during the reload");
    return;
  }
  out_.push_back({.kind = Action::Kind::reload_applied, .request = event.request});
  std::erase_if(s_.services, [](const auto& entry) {  // what earlier reloads removed
    return entry.second.removed && entry.second.replicas.empty();
  });
  const SpecDiff& diff = event.diff;
  for (const auto& name : diff.removed) {
    ServiceState& service = s_.services.at(name);
    log(LogLevel::info, "reload: removing service " + name);
    service.removed = true;
    service.desired = 0;
    apply_scale(service);
  }
  Waiter waiter{.request = event.request, .kind = Waiter::Kind::reload, .removed = diff.removed};
  for (const auto& settings : event.next) {
    const auto& name = settings.name;
    const bool added = contains(diff.added, name), rolled = contains(diff.rolled, name);
    if (!added && !rolled && !contains(diff.rescaled, name)) continue;
    waiter.services.push_back(name);
    ServiceState& service = s_.services[name];
    service.removed = false;  // added again while an earlier reload's removal still drains
    service.settings = settings;
    service.desired = settings.spec_replicas;
    if (added) {
      log(LogLevel::info, "reload: adding service " + name);
      apply_scale(service);
    } else if (rolled) {
      log(LogLevel::info, "reload: " + name + " changed; rolling its replicas");
      ++service.generation;
      open_rollout(name, service);
    } else {
      log(LogLevel::info,
          "reload: " + name + " scales to " + std::to_string(settings.spec_replicas));
      apply_scale(service);
    }
  }
  out_.push_back({.kind = Action::Kind::persist_scale});
  s_.waiters.push_back(std::move(waiter));
  reorder(event.next);
}

// The new spec's file order, then the removed services that still drain.
void Deployment::reorder(const std::vector<ServiceSettings>& next) {
  std::vector<std::string> order;
  for (const auto& settings : next) order.push_back(settings.name);
  for (const auto& name : s_.order) {
    if (s_.services.count(name) && !contains(order, name)) order.push_back(name);
  }
  s_.order = std::move(order);
}

void Deployment::down(const Event& event) {
  log(LogLevel::info, s_.phase == Phase::stopping
                          ? "down requested again; sending the stop signal again"
                          : "down requested; stopping " + s_.name);
  s_.stopped_by_request = true;
  s_.waiters.push_back({.request = event.request, .kind = Waiter::Kind::down});
  begin_shutdown();
}

// The reply to `waiter` once it is due, else nullopt.
std::optional<Action> Deployment::answer(const Waiter& waiter) const {
  using Status = RolloutState::Status;
  auto done = reply_action(waiter.request, ReplyCode::ok, "");
  switch (waiter.kind) {
    case Waiter::Kind::down:
      return std::nullopt;  // answered when the deployment has stopped
    case Waiter::Kind::restart:
      for (const auto& name : waiter.services) {
        const auto& rollout = s_.services.at(name).rollout;
        if (rollout->status == Status::failed) {
          return reply_action(waiter.request, ReplyCode::failed, rollout->error);
        }
        if (rollout->status == Status::running) return std::nullopt;
      }
      return done;
    case Waiter::Kind::scale:
      for (const auto& name : waiter.services) {
        const ServiceState& service = s_.services.at(name);
        auto result = settled(service, waiter.request);
        if (!result) {
          if (now_ < *waiter.deadline) return std::nullopt;
          return reply_action(waiter.request, ReplyCode::failed,
                              "timed out waiting for " + name + " to reach " +
                                  std::to_string(service.desired) + " ready replicas");
        }
        if (!result->ok) return result;
      }
      return done;
    case Waiter::Kind::reload:
      for (const auto& name : waiter.removed) {
        auto it = s_.services.find(name);
        if (it != s_.services.end() && !it->second.replicas.empty()) return std::nullopt;
      }
      for (const auto& name : waiter.services) {
        auto it = s_.services.find(name);
        if (it == s_.services.end()) continue;  // removed by a later reload
        auto result = settled(it->second, waiter.request);
        if (!result || !result->ok) return result;
      }
      return done;
  }
  return std::nullopt;
}

// A service is settled once no replica is starting, draining or rolling: then the reply is
// ok, or an error if its rollout failed or a new replica exited before it became ready.
std::optional<Action> Deployment::settled(const ServiceState& service,
                                          std::uint64_t request) const {
  using Status = RolloutState::Status;
  if (service.rollout && service.rollout->status == Status::failed) {
    return reply_action(request, ReplyCode::failed, service.rollout->error);
  }
  if (service.rollout && service.rollout->status == Status::running) return std::nullopt;
  int active = 0;
  for (const auto& [index, replica] : service.replicas) {
    const auto state = replica.machine.state;
    if (is_retiring(state)) return std::nullopt;
    ++active;
    if (!replica.machine.ever_ready && replica.last_exit &&
        (state == ReplicaState::backoff || state == ReplicaState::crash_loop ||
         state == ReplicaState::failed)) {
      const auto& exit = *replica.last_exit;
      return reply_action(request, ReplyCode::failed,
                          replica.id + " exited before it became ready (" +
                              describe_exit(exit.status) +
                              "); see deployctl status");
    }
  }
  if (ready_count(service) != service.desired || active != service.desired) return std::nullopt;
  return reply_action(request, ReplyCode::ok, "");
}

}  // namespace deployctl
