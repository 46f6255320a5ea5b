#include <doctest/doctest.h>

#include "scale_planner.h"

using namespace deployctl;

TEST_CASE("scale: up fills the lowest free indexes") {
  auto plan = plan_scale({{0, false}, {2, false}}, 5);
  CHECK(plan.start == std::vector<int>{1, 3, 4});
  CHECK(plan.drain.empty());
}

TEST_CASE("scale: down drains the highest indexes") {
  auto plan = plan_scale({{0, false}, {1, false}, {2, false}, {3, false}}, 1);
  CHECK(plan.drain == std::vector<int>{3, 2, 1});
  CHECK(plan.start.empty());
}

TEST_CASE("scale: retiring slots do not count and their indexes are not reused") {
  // 4 -> 2 started draining 2 and 3; now back to 4 before they are gone.
  auto plan = plan_scale({{0, false}, {1, false}, {2, true}, {3, true}}, 4);
  CHECK(plan.start == std::vector<int>{4, 5});
  CHECK(plan.drain.empty());
  CHECK(plan_scale({{0, false}, {1, true}}, 1).drain.empty());
}

TEST_CASE("scale: to zero and from nothing") {
  CHECK(plan_scale({{0, false}, {1, false}}, 0).drain == std::vector<int>{1, 0});
  CHECK(plan_scale({}, 3).start == std::vector<int>{0, 1, 2});
  auto same = plan_scale({{0, false}}, 1);
  CHECK(same.start.empty());
  CHECK(same.drain.empty());
}
