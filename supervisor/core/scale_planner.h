// Which replica slots to start and which to drain to reach a desired count. Pure.
#pragma once

#include <vector>

namespace deployctl {

struct SlotView {
  int index;
  bool retiring;  // draining or stopping: on its way out, does not count
};

struct ScalePlan {
  std::vector<int> start;  // new slots: the lowest indexes not in use by any slot
  std::vector<int> drain;  // the highest-indexed slots that are not already retiring
};

ScalePlan plan_scale(const std::vector<SlotView>& slots, int desired);

}  // namespace deployctl
