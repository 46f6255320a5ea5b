// Time as the core sees it: always passed in, never read inside the core.
#pragma once

#include <chrono>

#include "spec.h"

namespace deployctl {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

inline long long to_ms(Duration d) { return static_cast<long long>(d.count()); }

}  // namespace deployctl
