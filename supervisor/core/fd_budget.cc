#include "fd_budget.h"

namespace deployctl {

std::uint64_t fds_needed(const Spec& spec, const std::map<std::string, int>& replicas) {
  std::uint64_t needed = kFdsFixed + 1;  // + pre_start.log
  for (const ServiceSpec& service : spec.services) {
    auto given = replicas.find(service.name);
    const int count = given != replicas.end() ? given->second : service.replicas;
    needed += service_fds(listen_fds(service.listen.size(),
                                     service.sockets == SocketMode::per_replica, count),
                          service.health.kind == HealthKind::exec, count);
  }
  return needed;
}

std::size_t listen_fds(std::size_t addresses, bool per_replica, int replicas) {
  return per_replica ? static_cast<std::size_t>(replicas > 0 ? replicas : 0) : addresses;
}

std::uint64_t service_fds(std::size_t listen_sockets, bool exec_probe, int replicas) {
  const std::uint64_t per_replica = kFdsPerReplica + (exec_probe ? kFdsPerExecProbe : 0);
  return listen_sockets + 1 + static_cast<std::uint64_t>(replicas > 0 ? replicas : 0) * per_replica;
}

std::optional<std::string> fd_limit_error(const std::string& what, std::uint64_t needed,
                                          std::uint64_t limit) {
  if (needed <= limit) return std::nullopt;
  return what + " needs about " + std::to_string(needed) +
         " file descriptors, but the supervisor's limit (RLIMIT_NOFILE) is " +
         std::to_string(limit) +
         ": raise the limit (ulimit -n as root, LimitNOFILE= in the systemd unit) or run fewer "
         "replicas";
}

}  // namespace deployctl
