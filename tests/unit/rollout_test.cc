#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "rollout.h"

using namespace deployctl;
using Status = RolloutStep::Status;

namespace {

// Simulates a service through a whole rollout: new replicas become ready and drained ones exit
// one event at a time, checking the bounds after every step.
struct Simulation {
  int desired;
  RolloutSpec bounds;
  std::map<int, RolloutSlot> slots;
  int next_index = 0;
  int min_ready_seen = 1 << 30, max_active_seen = 0;

  Simulation(int n, RolloutSpec b) : desired(n), bounds(b) {
    for (int i = 0; i < n; ++i) slots[i] = {i, true, true, false, false};
    next_index = n;
  }
  std::vector<RolloutSlot> view() const {
    std::vector<RolloutSlot> out;
    for (auto& [index, slot] : slots) out.push_back(slot);
    return out;
  }
  Status step() {
    auto plan = plan_rollout(view(), desired, bounds);
    for (int i = 0; i < plan.start; ++i) {
      slots[next_index] = {next_index, false, false, false, false};
      ++next_index;
    }
    for (int index : plan.drain) slots[index].retiring = true;
    int active = 0, ready = 0;
    for (auto& [index, slot] : slots) {
      if (slot.retiring) continue;
      ++active;
      if (slot.ready) ++ready;
    }
    max_active_seen = std::max(max_active_seen, active);
    min_ready_seen = std::min(min_ready_seen, ready);
    return plan.status;
  }
  // One thing happens: the lowest retiring replica exits, else the lowest starting one is ready.
  bool advance() {
    for (auto it = slots.begin(); it != slots.end(); ++it) {
      if (it->second.retiring) {
        slots.erase(it);
        return true;
      }
    }
    for (auto& [index, slot] : slots) {
      if (!slot.ready) {
        slot.ready = true;
        return true;
      }
    }
    return false;
  }
  Status run() {
    for (int i = 0; i < 1000; ++i) {
      Status status = step();
      if (status != Status::in_progress) return status;
      if (!advance()) return step();
    }
    return Status::in_progress;
  }
};

}  // namespace

TEST_CASE("rollout: surge 1, unavailable 0 replaces all, never below desired ready") {
  Simulation sim(4, RolloutSpec{1, 0});
  CHECK(sim.run() == Status::done);
  CHECK(sim.min_ready_seen >= 4);
  CHECK(sim.max_active_seen <= 5);
  for (auto& [index, slot] : sim.slots) CHECK_FALSE(slot.old);
  CHECK(sim.slots.size() == 4);
}

TEST_CASE("rollout: surge 0, unavailable 1 drains first, never above desired") {
  Simulation sim(3, RolloutSpec{0, 1});
  CHECK(sim.run() == Status::done);
  CHECK(sim.min_ready_seen >= 2);
  CHECK(sim.max_active_seen <= 3);
  CHECK(sim.slots.size() == 3);
}

TEST_CASE("rollout: a wide surge starts several at once") {
  Simulation sim(4, RolloutSpec{4, 0});
  auto plan = plan_rollout(sim.view(), 4, RolloutSpec{4, 0});
  CHECK(plan.start == 4);
  CHECK(plan.drain.empty());
  CHECK(sim.run() == Status::done);
}

TEST_CASE("rollout: the first step with surge 1 starts one and drains none") {
  std::vector<RolloutSlot> slots{{0, true, true, false, false}, {1, true, true, false, false}};
  auto plan = plan_rollout(slots, 2, RolloutSpec{1, 0});
  CHECK(plan.start == 1);
  CHECK(plan.drain.empty());
  CHECK(plan.status == Status::in_progress);
}

TEST_CASE("rollout: old replicas that are not ready are replaced first") {
  std::vector<RolloutSlot> slots{{0, true, true, false, false},
                                 {1, true, false, false, false},
                                 {2, false, true, false, false}};
  auto plan = plan_rollout(slots, 2, RolloutSpec{1, 0});
  REQUIRE(plan.drain.size() >= 1);
  CHECK(plan.drain[0] == 1);
}

TEST_CASE("rollout: a new replica that fails stops the rollout") {
  std::vector<RolloutSlot> slots{{0, true, true, false, false}, {1, false, false, false, true}};
  CHECK(plan_rollout(slots, 1, RolloutSpec{1, 0}).status == Status::failed);
}

TEST_CASE("rollout: done only once the old ones are gone and the new ones ready") {
  std::vector<RolloutSlot> draining{{0, true, true, true, false}, {1, false, true, false, false}};
  CHECK(plan_rollout(draining, 1, RolloutSpec{1, 0}).status == Status::in_progress);
  std::vector<RolloutSlot> finished{{1, false, true, false, false}};
  CHECK(plan_rollout(finished, 1, RolloutSpec{1, 0}).status == Status::done);
  CHECK(plan_rollout({}, 0, RolloutSpec{1, 0}).status == Status::done);
}
