// [services.NAME]: the service's own keys; sub-tables are in service_sections.cc.
#include <algorithm>
#include <thread>

#include "listen_address.h"
#include "spec_fields.h"

namespace deployctl::detail {
namespace {

constexpr int kMaxReplicas = 1000;

void read_replicas(TableReader& reader, ServiceSpec* service) {
  const toml::node* node = reader.find("replicas");
  if (!node) return;
  if (const auto* text = node->as_string(); text && text->get() == "auto") {
    const unsigned cpus = std::thread::hardware_concurrency();
    service->replicas = static_cast<int>(std::clamp(cpus, 1u, unsigned{kMaxReplicas}));
    service->replicas_auto = true;
  } else if (node->is_integer()) {
    if (auto count = reader.integer("replicas", 0, kMaxReplicas)) {
      service->replicas = static_cast<int>(*count);
    }
  } else {
    reader.error_at("replicas", "expected an integer from 0 to 1000 or \"auto\", got " +
                                    describe(*node));
  }
}

void read_port(TableReader& reader, ServiceSpec* service) {
  const std::optional<std::int64_t> port = reader.integer("port", 1, 65535);
  if (!port) return;
  const std::int64_t last = *port + std::max(service->replicas, 1) - 1;
  if (last > 65535) {
    reader.error_at("port", "port " + std::to_string(*port) + " with " +
                                std::to_string(service->replicas) +
                                " replicas runs past 65535 (the last replica would get " +
                                std::to_string(last) + ")");
    return;
  }
  service->port = static_cast<std::uint16_t>(*port);
}

void read_listen(TableReader& reader, ServiceSpec* service, ListenClaims* claims) {
  const toml::node* node = reader.find("listen");
  if (!node) return;
  const auto* array = node->as_array();
  if (!array) {
    reader.error_at("listen", "expected an array of \"HOST:PORT\" strings such as "
                              "[\"127.0.0.1:8000\"], got " + describe(*node));
    return;
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    const std::string path = reader.key_path("listen") + "[" + std::to_string(i) + "]";
    const std::optional<std::string> text = read_string(element, path, reader.diag());
    if (!text) continue;
    std::string error;
    std::optional<ListenAddress> address = parse_listen_address(*text, 1, &error);
    if (!address) error = "invalid listen address " + quote(*text) + ": " + error;
    if (address) {
      if (auto conflict = claim_conflict(*address, service->name, *claims)) error = *conflict;
    }
    if (!error.empty()) {
      reader.diag().add(element.source(), path, error);
      continue;
    }
    claims->emplace_back(*address, service->name);
    service->listen.push_back(std::move(*address));
  }
}

void read_sockets(TableReader& reader, ServiceSpec* service) {
  const auto mode = reader.choice("sockets", {"shared", "per-replica"});
  if (mode != "per-replica") return;
  if (service->listen.size() != 1) {
    reader.error_at("sockets", "\"per-replica\" needs exactly one listen address, got " +
                                   std::to_string(service->listen.size()));
    return;
  }
  service->sockets = SocketMode::per_replica;
}

void read_account(TableReader& reader, std::string_view key, std::string* field) {
  std::optional<std::string> name = reader.string(key);
  if (name && name->empty()) {
    reader.error_at(key, "expected a user or group name, got \"\"");
  } else if (name) {
    *field = std::move(*name);
  }
}

void read_service_command(TableReader& reader, const PlaceholderRules& rules,
                          ServiceSpec* service) {
  if (!reader.find("command")) {
    reader.error_missing("command", "every service needs a command, e.g. command = [\"./server\"]");
    return;
  }
  if (auto command = read_command(reader, "command", rules)) service->command = *command;
}

}  // namespace

std::optional<std::string> claim_conflict(const ListenAddress& address, const std::string& service,
                                          const ListenClaims& claims) {
  for (const auto& [taken, owner] : claims) {
    if (taken.host != address.host || taken.port != address.port) continue;
    const std::string text = quote(address.text);
    if (owner != service) return text + " is already used by service " + quote(owner);
    if (taken.text == address.text) return text + " is listed twice";
    return text + " is the same address as " + quote(taken.text);
  }
  return std::nullopt;
}

ServiceSpec read_service(const toml::table& table, const std::string& name,
                         const std::filesystem::path& spec_dir, ListenClaims* claims,
                         Diagnostics& diag) {
  TableReader reader(table, join_key("services", name), diag,
                     {"command", "replicas", "listen", "port", "env", "env_file", "working_dir",
                      "user", "group", "restart", "health", "memory", "stop", "rollout", "tls",
                      "sockets"});
  ServiceSpec service;
  service.name = name;
  service.working_dir = resolve_path(spec_dir, ".");
  read_replicas(reader, &service);
  read_port(reader, &service);
  read_listen(reader, &service, claims);
  read_sockets(reader, &service);
  const ServiceFacts facts{reader.find("port") != nullptr, reader.find("listen") != nullptr};
  const std::string no_tls_reason =
      "{tls_cert} and {tls_key} need a [" + reader.key_path("tls") + "] table";
  const PlaceholderRules rules{true,
                               facts.has_port,
                               "",
                               "{port} needs port = N on the service (replica i then gets N + i)",
                               reader.find("tls") != nullptr,
                               no_tls_reason};
  read_service_command(reader, rules, &service);
  if (auto env = read_env(reader, "env", rules)) service.env = std::move(*env);
  check_exec_size(reader, "command", "env", service.command, service.env);
  if (auto path = read_path(reader, "env_file", spec_dir)) service.env_file = *path;
  if (auto path = read_path(reader, "working_dir", spec_dir)) service.working_dir = *path;
  read_account(reader, "user", &service.user);
  read_account(reader, "group", &service.group);
  read_restart(reader, &service.restart);
  read_health(reader, facts, rules, &service.health);
  read_memory(reader, &service.memory);
  read_stop(reader, &service.stop);
  read_rollout(reader, &service.rollout);
  read_tls(reader, name, facts, spec_dir, claims, &service.tls);
  return service;
}

}  // namespace deployctl::detail
