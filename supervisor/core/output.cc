#include "output.h"

#include <algorithm>
#include <cmath>

namespace deployctl {

void LineSplitter::feed(std::string_view bytes, std::vector<std::string>* lines) {
  while (!bytes.empty()) {
    auto newline = bytes.find('\n');
    std::size_t take = std::min(newline == std::string_view::npos ? bytes.size() : newline,
                                max_line_ - partial_.size());
    partial_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    bool complete = !bytes.empty() && bytes.front() == '\n';
    if (complete) bytes.remove_prefix(1);
    if (complete || partial_.size() >= max_line_) {
      if (complete && !partial_.empty() && partial_.back() == '\r') partial_.pop_back();
      lines->push_back(std::move(partial_));
      partial_.clear();
    }
  }
}

std::string LineSplitter::take_rest() {
  std::string rest = std::move(partial_);
  partial_.clear();
  return rest;
}

void ReadBudget::refill(TimePoint now) {
  double seconds = std::chrono::duration<double>(now - last_).count();
  if (seconds > 0) tokens_ = std::min(burst_, tokens_ + seconds * rate_);
  last_ = std::max(last_, now);
}

std::size_t ReadBudget::available(TimePoint now) {
  refill(now);
  return tokens_ <= 0 ? 0 : static_cast<std::size_t>(tokens_);
}

Duration ReadBudget::wait_for(std::size_t bytes, TimePoint now) {
  refill(now);
  double missing = static_cast<double>(bytes) - tokens_;
  if (missing <= 0) return Duration{0};
  return Duration{static_cast<Duration::rep>(std::ceil(missing / rate_ * 1000.0))};
}

}  // namespace deployctl
