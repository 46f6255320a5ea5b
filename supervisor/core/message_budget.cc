#include "message_budget.h"

namespace deployctl {

bool MessageBudget::admit(TimePoint now) {
  if (bucket_.available(now) >= 1) {
    bucket_.consume(1);
    dropping_ = false;
    return true;
  }
  dropping_ = true;
  ++dropped_;
  return false;
}

Duration MessageBudget::pause(TimePoint now) {
  if (!dropping_) return Duration{0};
  return bucket_.wait_for(kBatch, now);
}

}  // namespace deployctl
