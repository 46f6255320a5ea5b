// A receive buffer: bytes are appended at the tail and consumed from the head. Grows (by
// doubling) only while full, up to a maximum; never shrinks. Pure memory management.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace deployctl::http {

class InputBuffer {
 public:
  InputBuffer(std::size_t initial_capacity, std::size_t max_capacity)
      : capacity_(initial_capacity), max_capacity_(max_capacity) {}

  std::string_view data() const { return {storage_.get() + begin_, end_ - begin_}; }
  bool empty() const { return begin_ == end_; }
  std::size_t capacity() const { return capacity_; }

  // Precondition: count <= data().size().
  void consume(std::size_t count);
  void clear() { begin_ = end_ = 0; }

  // Free space at the tail for the next receive; empty only if the buffer holds
  // max_capacity unconsumed bytes. Invalidates data().
  std::span<char> prepare();
  // Precondition: count <= prepare().size() of the last prepare().
  void commit(std::size_t count) { end_ += count; }

 private:
  static constexpr std::size_t kMinTailRoom = 1024;

  std::unique_ptr<char[]> storage_;  // allocated by the first prepare()
  std::size_t capacity_;
  std::size_t max_capacity_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace deployctl::http
