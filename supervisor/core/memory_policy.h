// What to do about one replica's memory, from its samples (pure: no I/O, time passed in).
//
// Hard limit (`max`): in the sampling mode a sample above it kills the replica at once (in the
// cgroup modes the kernel enforces it and this policy only watches the soft limit).
// Soft limit (`restart_above`): the replica is recycled once its memory *stays* above it, i.e.
// every sample for at least `soft_window` and at least `soft_samples` of them, so a single
// spike never recycles. The recycle verdict repeats at every sample while the memory stays
// above: the caller acts on the first and ignores the rest while the replacement runs.
#pragma once

#include <cstdint>
#include <optional>

#include "clock.h"

namespace deployctl {

struct MemoryLimits {
  std::optional<std::uint64_t> max;            // bytes
  std::optional<std::uint64_t> restart_above;  // bytes
  bool any() const { return max || restart_above; }
};

struct MemoryPolicyOptions {
  Duration soft_window{1000};
  int soft_samples = 3;
  bool enforce_max = false;  // true in the sampling mode: no kernel enforces `max`
};

enum class MemoryVerdict { none, kill, recycle };

const char* verdict_name(MemoryVerdict verdict);

class MemoryPolicy {
 public:
  MemoryPolicy(MemoryLimits limits, MemoryPolicyOptions options)
      : limits_(limits), options_(options) {}

  // One sample of the replica's memory (bytes) taken at `now`; samples come in time order.
  MemoryVerdict observe(std::uint64_t bytes, TimePoint now);

  // A new run of the replica (after a restart): forgets what the previous run did.
  void reset();

  const MemoryLimits& limits() const { return limits_; }

 private:
  MemoryLimits limits_;
  MemoryPolicyOptions options_;
  std::optional<TimePoint> above_since_;
  int samples_above_ = 0;
};

}  // namespace deployctl
