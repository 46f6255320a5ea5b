#include "input_buffer.h"

#include <algorithm>
#include <cstring>

namespace deployctl::http {

void InputBuffer::consume(std::size_t count) {
  begin_ += count;
  if (begin_ == end_) begin_ = end_ = 0;
}

std::span<char> InputBuffer::prepare() {
  if (!storage_) storage_ = std::make_unique<char[]>(capacity_);
  if (capacity_ - end_ < kMinTailRoom && begin_ > 0) {
    std::memmove(storage_.get(), storage_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == capacity_ && capacity_ < max_capacity_) {
    std::size_t grown = std::min(capacity_ * 2, max_capacity_);
    auto larger = std::make_unique<char[]>(grown);
    std::memcpy(larger.get(), storage_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    storage_ = std::move(larger);
    capacity_ = grown;
  }
  return {storage_.get() + end_, capacity_ - end_};
}

}  // namespace deployctl::http
