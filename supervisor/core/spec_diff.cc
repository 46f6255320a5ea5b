#include "spec_diff.h"

namespace deployctl {

SpecDiff diff_specs(const Spec& before, const Spec& after) {
  SpecDiff diff;
  for (const auto& service : after.services) {
    const ServiceSpec* old = before.find_service(service.name);
    if (!old) {
      diff.added.push_back(service.name);
      continue;
    }
    ServiceSpec same_count = service;
    same_count.replicas = old->replicas;
    same_count.replicas_auto = old->replicas_auto;
    if (!(same_count == *old)) {
      diff.rolled.push_back(service.name);
    } else if (service.replicas != old->replicas) {
      diff.rescaled.push_back(service.name);
    }
  }
  for (const auto& service : before.services) {
    if (!after.find_service(service.name)) diff.removed.push_back(service.name);
  }
  diff.pre_start_changed = !(before.pre_start == after.pre_start);
  return diff;
}

}  // namespace deployctl
