#include "rollout.h"

#include <algorithm>

namespace deployctl {

RolloutStep plan_rollout(const std::vector<RolloutSlot>& slots, int desired,
                         const RolloutSpec& bounds) {
  RolloutStep step;
  int old_active = 0, new_active = 0, ready = 0, old_retiring = 0;
  std::vector<const RolloutSlot*> old_candidates;
  for (const auto& slot : slots) {
    if (slot.failed && !slot.old) {
      step.status = RolloutStep::Status::failed;
      return step;
    }
    if (slot.retiring) {
      if (slot.old) ++old_retiring;
      continue;
    }
    (slot.old ? old_active : new_active) += 1;
    if (slot.ready) ++ready;
    if (slot.old) old_candidates.push_back(&slot);
  }
  const int new_ready = ready - static_cast<int>(std::count_if(
                                    old_candidates.begin(), old_candidates.end(),
                                    [](const RolloutSlot* s) { return s->ready; }));
  if (old_active == 0 && old_retiring == 0 && new_ready >= desired) {
    step.status = RolloutStep::Status::done;
    return step;
  }
  // Surge: start new replicas while the active count stays within desired + max_surge.
  const int still_needed = desired - new_active;
  const int room = desired + bounds.max_surge - (old_active + new_active);
  step.start = std::max(0, std::min(still_needed, room));

  // Drain old replicas: not-ready ones freely (they serve nothing), ready ones only while at
  // least desired - max_unavailable stay ready, and never below desired active in total once
  // the replacements are started.
  std::sort(old_candidates.begin(), old_candidates.end(),
            [](const RolloutSlot* a, const RolloutSlot* b) {
              if (a->ready != b->ready) return !a->ready;  // not-ready first
              return a->index > b->index;                   // then highest index first
            });
  const int min_ready = desired - bounds.max_unavailable;
  int active_after = old_active + new_active + step.start;
  int ready_after = ready;
  for (const RolloutSlot* slot : old_candidates) {
    if (active_after - 1 < desired - bounds.max_unavailable) break;
    if (slot->ready && ready_after - 1 < min_ready) break;
    step.drain.push_back(slot->index);
    --active_after;
    if (slot->ready) --ready_after;
  }
  return step;
}

}  // namespace deployctl
