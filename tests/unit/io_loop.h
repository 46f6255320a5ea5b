// Running an Asio loop in tests: in short slices, bounded, until a condition holds.
#pragma once

#include <chrono>
#include <functional>

#include "asio.h"
#include "clock.h"

namespace deployctl::testing {

// Runs `io` in 5 ms slices until `done()` or until `limit` has passed; returns done().
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      Duration limit) {
  const TimePoint deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

inline void run_for(boost::asio::io_context& io, Duration span) {
  run_until(
      io, [] { return false; }, span);
}

}  // namespace deployctl::testing
