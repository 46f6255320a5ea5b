#include "fd_budget.h"

namespace deployctl {

std::uint64_t fds_needed(const Spec& spec, const std::map<std::string, int>& replicas) {
  std::uint64_t needed = kFdsFixed + 1;  // + pre_start.log
  for (const ServiceSpec& service : spec.services) {
    auto given = replicas.find(service.name);
    const int count = given != replicas.end() ? given->second : service.replicas;
    const std::uint64_t per_replica =
        kFdsPerReplica + (service.health.kind == HealthKind::exec ? kFdsPerExecProbe : 0);
    needed += service.listen.size() + 1;  // + the service's log file
    needed += static_cast<std::uint64_t>(count > 0 ? count : 0) * per_replica;
  }
  return needed;
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
