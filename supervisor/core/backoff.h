// Restart backoff and crash-loop detection for one replica. Pure: time and randomness are inputs.
//
// Policy (documented in README): the first restart after a stable run is immediate, like s6;
// the 2nd consecutive failure waits `initial`, each further one doubles, capped at `max`, each
// scaled by a random factor in [1 - jitter, 1 + jitter] so replicas never restart in lockstep.
// A run that lasted at least `reset_after` is stable: it resets the consecutive-failure count.
#pragma once

#include <deque>

#include "clock.h"

namespace deployctl {

class RestartBackoff {
 public:
  RestartBackoff(BackoffSpec backoff, CrashLoopSpec crash_loop)
      : backoff_(backoff), crash_loop_(crash_loop) {}

  struct Decision {
    Duration delay{0};
    bool crash_loop = false;  // restarted `restarts` times within `within`
  };

  // A replica that was started at `started` exited at `now`. `random01` is uniform in [0, 1).
  Decision on_exit(TimePoint started, TimePoint now, double random01);

  int consecutive_failures() const { return consecutive_failures_; }

 private:
  Duration delay_for(int failures, double random01) const;

  BackoffSpec backoff_;
  CrashLoopSpec crash_loop_;
  int consecutive_failures_ = 0;
  std::deque<TimePoint> restarts_;  // restart times inside the crash-loop window
};

}  // namespace deployctl
