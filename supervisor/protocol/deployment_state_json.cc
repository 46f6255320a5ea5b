#include "deployment_state_json.h"

#include <utility>

namespace deployctl {

namespace {

constexpr int kVersion = 1;

// ---- writing ----

json::Value time_value(TimePoint at) {
  return static_cast<long long>(at.time_since_epoch().count());
}

json::Value strings(const std::vector<std::string>& items) {
  json::Array array;
  for (const auto& item : items) array.push_back(item);
  return array;
}

template <typename T>
json::Value optional_int(const std::optional<T>& value) {
  return value ? json::Value(static_cast<long long>(*value)) : json::Value();
}

json::Value policy_json(const ReplicaPolicy& policy) {
  const auto& restart = policy.restart;
  json::Value out;
  out["restart"] = static_cast<int>(restart.policy);
  out["backoff_initial"] = restart.backoff.initial.count();
  out["backoff_max"] = restart.backoff.max.count();
  out["backoff_reset_after"] = restart.backoff.reset_after.count();
  out["backoff_jitter"] = restart.backoff.jitter;
  out["crash_loop_restarts"] = restart.crash_loop.restarts;
  out["crash_loop_within"] = restart.crash_loop.within.count();
  out["stop_signal"] = policy.stop.signal;
  out["stop_timeout"] = policy.stop.timeout.count();
  out["start_period"] = policy.start_period.count();
  if (policy.steered) {  // absent: shared sockets (and what older supervisors wrote)
    out["steered"] = true;
    out["quiesce_limit"] = policy.quiesce_limit.count();
    out["quiesce_grace"] = policy.quiesce_grace.count();
  }
  return out;
}

json::Value machine_json(const ReplicaMachineState& machine) {
  json::Value out;
  out["state"] = static_cast<int>(machine.state);
  out["pending_reason"] = optional_int(machine.pending_reason);
  out["started_at"] = time_value(machine.started_at);
  out["ever_ready"] = machine.ever_ready;
  if (machine.queue_empty) out["queue_empty"] = true;
  out["fail_fast"] = machine.fail_fast;
  out["restarts"] = machine.restarts;
  out["consecutive_failures"] = machine.backoff.consecutive_failures;
  json::Array restarts;
  for (TimePoint at : machine.backoff.restarts) restarts.push_back(time_value(at));
  out["restart_times"] = std::move(restarts);
  return out;
}

json::Value exit_json(const std::optional<ExitRecord>& exit) {
  if (!exit) return {};
  json::Value out;
  out["code"] = optional_int(exit->status.code);
  out["signal"] = optional_int(exit->status.signal);
  if (exit->status.unknown) out["unknown"] = true;
  out["reason"] = static_cast<int>(exit->reason);
  out["at"] = time_value(exit->at);
  out["stderr_tail"] = strings(exit->stderr_tail);
  return out;
}

json::Value replica_json(const ReplicaRecord& replica) {
  json::Value out;
  out["serial"] = replica.serial;
  out["index"] = replica.index;
  out["id"] = replica.id;
  out["generation"] = replica.generation;
  out["policy"] = policy_json(replica.policy);
  out["ready_when_running"] = replica.ready_when_running;
  out["machine"] = machine_json(replica.machine);
  out["last_exit"] = exit_json(replica.last_exit);
  out["spawn_error"] = replica.spawn_error;
  out["recycle"] = static_cast<int>(replica.recycle);
  out["memory_restarts"] = replica.memory_restarts;
  return out;
}

json::Value service_json(const ServiceState& service) {
  const auto& settings = service.settings;
  json::Value out;
  out["name"] = settings.name;
  out["spec_replicas"] = settings.spec_replicas;
  out["max_surge"] = settings.rollout.max_surge;
  out["max_unavailable"] = settings.rollout.max_unavailable;
  out["policy"] = policy_json(settings.policy);
  out["ready_when_running"] = settings.ready_when_running;
  out["listen"] = strings(settings.listen);
  out["exec_probe"] = settings.exec_probe;
  out["removed"] = service.removed;
  out["desired"] = service.desired;
  out["generation"] = service.generation;
  json::Value rollout;
  if (service.rollout) {
    rollout["status"] = static_cast<int>(service.rollout->status);
    rollout["error"] = service.rollout->error;
  }
  out["rollout"] = std::move(rollout);
  json::Array replicas;
  for (const auto& [index, replica] : service.replicas) replicas.push_back(replica_json(replica));
  out["replicas"] = std::move(replicas);
  json::Array carry;
  for (int count : service.memory_carry) carry.push_back(count);
  out["memory_carry"] = std::move(carry);
  return out;
}

json::Value waiter_json(const Waiter& waiter) {
  json::Value out;
  out["request"] = waiter.request;
  out["kind"] = static_cast<int>(waiter.kind);
  out["services"] = strings(waiter.services);
  out["removed"] = strings(waiter.removed);
  out["deadline"] = waiter.deadline ? time_value(*waiter.deadline) : json::Value();
  return out;
}

// ---- reading: every getter clears `ok` on a missing or mistyped member ----

struct Reader {
  bool ok = true;

  const json::Value& get(const json::Value& object, const char* key) {
    static const json::Value null;
    const json::Value* found = json::find(object, key);
    if (!found) ok = false;
    return found ? *found : null;
  }
  long long integer(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (!value.is_number_integer()) ok = false;
    return json::as_int(value);
  }
  std::uint64_t unsigned_integer(const json::Value& object, const char* key) {
    const long long value = integer(object, key);
    if (value < 0) ok = false;
    return static_cast<std::uint64_t>(value);
  }
  template <typename E>
  E enumeration(const json::Value& object, const char* key, E last) {
    const long long value = integer(object, key);
    if (value < 0 || value > static_cast<long long>(last)) ok = false;
    return static_cast<E>(value);
  }
  bool boolean(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (!value.is_boolean()) ok = false;
    return json::as_bool(value);
  }
  double number(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (!value.is_number()) ok = false;
    return json::as_double(value);
  }
  std::string text(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (!value.is_string()) ok = false;
    return json::as_string(value);
  }
  Duration millis(const json::Value& object, const char* key) {
    return Duration{integer(object, key)};
  }
  TimePoint time(const json::Value& value) {
    if (!value.is_number_integer()) ok = false;
    return TimePoint{TimePoint::duration{json::as_int(value)}};
  }
  TimePoint time(const json::Value& object, const char* key) { return time(get(object, key)); }
  std::optional<int> optional_int(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (value.is_null()) return std::nullopt;
    if (!value.is_number_integer()) ok = false;
    return static_cast<int>(json::as_int(value));
  }
  const json::Array& array(const json::Value& object, const char* key) {
    const auto& value = get(object, key);
    if (!value.is_array()) ok = false;
    return json::as_array(value);
  }
  std::vector<std::string> strings(const json::Value& object, const char* key) {
    std::vector<std::string> out;
    for (const auto& item : array(object, key)) {
      if (!item.is_string()) ok = false;
      out.push_back(json::as_string(item));
    }
    return out;
  }

  ReplicaPolicy policy(const json::Value& in) {
    ReplicaPolicy policy;
    auto& restart = policy.restart;
    restart.policy = enumeration(in, "restart", RestartPolicy::never);
    restart.backoff.initial = millis(in, "backoff_initial");
    restart.backoff.max = millis(in, "backoff_max");
    restart.backoff.reset_after = millis(in, "backoff_reset_after");
    restart.backoff.jitter = number(in, "backoff_jitter");
    restart.crash_loop.restarts = static_cast<int>(integer(in, "crash_loop_restarts"));
    restart.crash_loop.within = millis(in, "crash_loop_within");
    policy.stop.signal = static_cast<int>(integer(in, "stop_signal"));
    policy.stop.timeout = millis(in, "stop_timeout");
    policy.start_period = millis(in, "start_period");
    if (json::find(in, "steered")) {
      policy.steered = boolean(in, "steered");
      policy.quiesce_limit = millis(in, "quiesce_limit");
      policy.quiesce_grace = millis(in, "quiesce_grace");
    }
    return policy;
  }

  ReplicaMachineState machine(const json::Value& in) {
    ReplicaMachineState machine;
    machine.state = enumeration(in, "state", ReplicaState::quiescing);
    if (auto reason = optional_int(in, "pending_reason")) {
      if (*reason < 0 || *reason > static_cast<int>(ExitReason::adopted)) ok = false;
      machine.pending_reason = static_cast<ExitReason>(*reason);
    }
    machine.started_at = time(in, "started_at");
    machine.ever_ready = boolean(in, "ever_ready");
    machine.queue_empty = json::find(in, "queue_empty") && boolean(in, "queue_empty");
    machine.fail_fast = boolean(in, "fail_fast");
    machine.restarts = static_cast<int>(integer(in, "restarts"));
    machine.backoff.consecutive_failures = static_cast<int>(integer(in, "consecutive_failures"));
    for (const auto& at : array(in, "restart_times")) machine.backoff.restarts.push_back(time(at));
    return machine;
  }

  std::optional<ExitRecord> exit(const json::Value& in) {
    if (in.is_null()) return std::nullopt;
    ExitRecord exit;
    exit.status.code = optional_int(in, "code");
    exit.status.signal = optional_int(in, "signal");
    exit.status.unknown = json::as_bool(json::get(in, "unknown"));
    exit.reason = enumeration(in, "reason", ExitReason::adopted);
    exit.at = time(in, "at");
    exit.stderr_tail = strings(in, "stderr_tail");
    return exit;
  }

  ReplicaRecord replica(const json::Value& in) {
    ReplicaRecord replica;
    replica.serial = unsigned_integer(in, "serial");
    replica.index = static_cast<int>(integer(in, "index"));
    replica.id = text(in, "id");
    replica.generation = unsigned_integer(in, "generation");
    replica.policy = policy(get(in, "policy"));
    replica.ready_when_running = boolean(in, "ready_when_running");
    replica.machine = machine(get(in, "machine"));
    replica.last_exit = exit(get(in, "last_exit"));
    replica.spawn_error = text(in, "spawn_error");
    replica.recycle = enumeration(in, "recycle", Recycle::gave_up);
    replica.memory_restarts = static_cast<int>(integer(in, "memory_restarts"));
    return replica;
  }

  ServiceState service(const json::Value& in) {
    ServiceState service;
    auto& settings = service.settings;
    settings.name = text(in, "name");
    settings.spec_replicas = static_cast<int>(integer(in, "spec_replicas"));
    settings.rollout.max_surge = static_cast<int>(integer(in, "max_surge"));
    settings.rollout.max_unavailable = static_cast<int>(integer(in, "max_unavailable"));
    settings.policy = policy(get(in, "policy"));
    settings.ready_when_running = boolean(in, "ready_when_running");
    settings.listen = strings(in, "listen");
    settings.exec_probe = boolean(in, "exec_probe");
    service.removed = boolean(in, "removed");
    service.desired = static_cast<int>(integer(in, "desired"));
    service.generation = unsigned_integer(in, "generation");
    if (const auto& rollout = get(in, "rollout"); !rollout.is_null()) {
      service.rollout = RolloutState{enumeration(rollout, "status", RolloutState::Status::failed),
                                     text(rollout, "error")};
    }
    for (const auto& item : array(in, "replicas")) {
      ReplicaRecord record = replica(item);
      service.replicas[record.index] = std::move(record);
    }
    for (const auto& count : array(in, "memory_carry")) {
      if (!count.is_number_integer()) ok = false;
      service.memory_carry.push_back(static_cast<int>(json::as_int(count)));
    }
    return service;
  }

  Waiter waiter(const json::Value& in) {
    Waiter waiter;
    waiter.request = unsigned_integer(in, "request");
    waiter.kind = enumeration(in, "kind", Waiter::Kind::down);
    waiter.services = strings(in, "services");
    waiter.removed = strings(in, "removed");
    if (const auto& deadline = get(in, "deadline"); !deadline.is_null()) {
      waiter.deadline = time(deadline);
    }
    return waiter;
  }
};

}  // namespace

json::Value to_json(const DeploymentState& state) {
  json::Value out;
  out["version"] = kVersion;
  out["name"] = state.name;
  out["phase"] = static_cast<int>(state.phase);
  out["started_at"] = time_value(state.started_at);
  out["start_reported"] = state.start_reported;
  out["stopped_by_request"] = state.stopped_by_request;
  out["exit_code"] = state.exit_code;
  out["interrupts"] = state.interrupts;
  out["next_serial"] = state.next_serial;
  json::Array services;
  for (const ServiceState* service : in_file_order(state)) {  // the array keeps the order
    services.push_back(service_json(*service));
  }
  out["services"] = std::move(services);
  json::Array waiters;
  for (const auto& waiter : state.waiters) waiters.push_back(waiter_json(waiter));
  out["waiters"] = std::move(waiters);
  out["failed_start"] = optional_int(state.failed_start);
  return out;
}

std::optional<DeploymentState> deployment_state_from_json(const json::Value& in) {
  Reader read;
  if (read.integer(in, "version") != kVersion) return std::nullopt;
  DeploymentState state;
  state.name = read.text(in, "name");
  state.phase = read.enumeration(in, "phase", Phase::finished);
  state.started_at = read.time(in, "started_at");
  state.start_reported = read.boolean(in, "start_reported");
  state.stopped_by_request = read.boolean(in, "stopped_by_request");
  state.exit_code = static_cast<int>(read.integer(in, "exit_code"));
  state.interrupts = static_cast<int>(read.integer(in, "interrupts"));
  state.next_serial = read.unsigned_integer(in, "next_serial");
  for (const auto& item : read.array(in, "services")) {
    ServiceState service = read.service(item);
    const std::string name = service.settings.name;
    if (!state.services.emplace(name, std::move(service)).second) read.ok = false;  // twice
    state.order.push_back(name);
  }
  for (const auto& item : read.array(in, "waiters")) state.waiters.push_back(read.waiter(item));
  if (const auto& failed = read.get(in, "failed_start"); !failed.is_null()) {
    if (!failed.is_number_integer() || json::as_int(failed) < 0) read.ok = false;
    state.failed_start = static_cast<std::uint64_t>(json::as_int(failed));
  }
  if (!read.ok) return std::nullopt;
  return state;
}

}  // namespace deployctl
