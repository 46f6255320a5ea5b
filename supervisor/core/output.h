// Replica output handling that needs no I/O: splitting a byte stream into lines, and the
// per-replica read budget. Pure; time is passed in.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "clock.h"

namespace deployctl {

// Splits a byte stream into lines. A line longer than `max_line` is cut into pieces of that size.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line = 16 * 1024) : max_line_(max_line) {}

  // Appends complete lines (without '\n', a trailing '\r' removed) to *lines.
  void feed(std::string_view bytes, std::vector<std::string>* lines);
  // The unterminated rest, if any (at EOF).
  std::string take_rest();

 private:
  std::size_t max_line_;
  std::string partial_;
};

// Token bucket: `rate` bytes per second, at most `burst` banked. Starts full.
class ReadBudget {
 public:
  ReadBudget(double rate, double burst, TimePoint now) : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

  // Bytes that may be read now.
  std::size_t available(TimePoint now);
  void consume(std::size_t bytes) { tokens_ -= static_cast<double>(bytes); }
  // How long until `bytes` are available.
  Duration wait_for(std::size_t bytes, TimePoint now);

 private:
  void refill(TimePoint now);
  double rate_, burst_, tokens_;
  TimePoint last_;
};

}  // namespace deployctl
