#include "memory_policy.h"

namespace deployctl {

const char* verdict_name(MemoryVerdict verdict) {
  switch (verdict) {
    case MemoryVerdict::none: return "none";
    case MemoryVerdict::kill: return "kill";
    case MemoryVerdict::recycle: return "recycle";
  }
  return "?";
}

MemoryVerdict MemoryPolicy::observe(std::uint64_t bytes, TimePoint now) {
  if (options_.enforce_max && limits_.max && bytes > *limits_.max) return MemoryVerdict::kill;
  if (!limits_.restart_above || bytes <= *limits_.restart_above) {
    above_since_.reset();
    samples_above_ = 0;
    return MemoryVerdict::none;
  }
  if (!above_since_) above_since_ = now;
  ++samples_above_;
  const bool stayed = now - *above_since_ >= options_.soft_window &&
                      samples_above_ >= options_.soft_samples;
  return stayed ? MemoryVerdict::recycle : MemoryVerdict::none;
}

void MemoryPolicy::reset() {
  above_since_.reset();
  samples_above_ = 0;
}

}  // namespace deployctl
