// The daemon's two side effects that tests replace: reading the time and launching a process.
// The real ones read the steady clock and fork/exec (process.h); fakes live in tests/.
#pragma once

#include "clock.h"
#include "process.h"

namespace deployctl {

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual TimePoint now() const = 0;
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  virtual SpawnResult launch(const SpawnRequest& request) = 0;
};

class SteadyTime final : public TimeSource {
 public:
  TimePoint now() const override { return Clock::now(); }
};

class ForkExecLauncher final : public ProcessLauncher {
 public:
  SpawnResult launch(const SpawnRequest& request) override { return spawn_process(request); }
};

}  // namespace deployctl
