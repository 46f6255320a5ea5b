#include "scale_planner.h"

#include <algorithm>
#include <set>

namespace deployctl {

ScalePlan plan_scale(const std::vector<SlotView>& slots, int desired) {
  ScalePlan plan;
  std::set<int> used;
  std::vector<int> active;
  for (const auto& slot : slots) {
    used.insert(slot.index);
    if (!slot.retiring) active.push_back(slot.index);
  }
  int count = static_cast<int>(active.size());
  if (count > desired) {
    std::sort(active.rbegin(), active.rend());
    plan.drain.assign(active.begin(), active.begin() + (count - desired));
  }
  for (int index = 0; count < desired; ++index) {
    if (used.count(index)) continue;
    plan.start.push_back(index);
    ++count;
  }
  return plan;
}

}  // namespace deployctl
