#include "timeouts.h"

#include <algorithm>

#include "acme_manager.h"

namespace deployctl {

std::chrono::milliseconds default_request_timeout(std::string_view command, const Spec* spec) {
  if (command == "status" || command == "metrics" || command == "events" || command == "renew") {
    return kStatusTimeout;
  }
  if (command == "upgrade") return kUpgradeTimeout;
  if (!spec) return kLongRequestTimeout;
  Duration longest_stop{0}, longest_cycle{0}, every_replica{0}, pre_start{0};
  for (const auto& service : spec->services) {
    const Duration cycle = service.health.start_period + service.stop.timeout;
    longest_stop = std::max(longest_stop, service.stop.timeout);
    longest_cycle = std::max(longest_cycle, cycle);
    every_replica += cycle * std::max(service.replicas, 1);
  }
  for (const auto& step : spec->pre_start) pre_start += step.timeout;
  Duration acme{0};  // a reload's certificates: lego runs for each changed service at once
  for (const auto& service : spec->services) {
    if (service.tls && service.tls->acme) acme = std::chrono::duration_cast<Duration>(kLegoTimeout);
  }
  if (command == "down") return longest_stop + kTimeoutMargin;
  if (command == "scale") return longest_cycle + kTimeoutMargin;
  if (command == "restart") return every_replica + kTimeoutMargin;
  if (command == "reload") return every_replica + pre_start + acme + kTimeoutMargin;
  return kLongRequestTimeout;
}

}  // namespace deployctl
