#include "backoff.h"

#include <algorithm>
#include <cmath>

namespace deployctl {

Duration RestartBackoff::delay_for(int failures, double random01) const {
  if (failures <= 1) return Duration{0};
  double base = static_cast<double>(backoff_.initial.count());
  double cap = static_cast<double>(backoff_.max.count());
  double delay = std::min(cap, base * std::ldexp(1.0, std::min(failures - 2, 40)));
  double factor = 1.0 + backoff_.jitter * (2.0 * random01 - 1.0);
  return Duration{static_cast<Duration::rep>(std::llround(std::max(0.0, delay * factor)))};
}

RestartBackoff::Decision RestartBackoff::on_exit(TimePoint started, TimePoint now,
                                                 double random01) {
  if (now - started >= backoff_.reset_after) consecutive_failures_ = 0;
  ++consecutive_failures_;

  while (!restarts_.empty() && now - restarts_.front() >= crash_loop_.within) {
    restarts_.pop_front();
  }
  restarts_.push_back(now);

  Decision decision;
  decision.delay = delay_for(consecutive_failures_, random01);
  decision.crash_loop = static_cast<int>(restarts_.size()) >= crash_loop_.restarts;
  return decision;
}

}  // namespace deployctl
