// The work one replica can make the supervisor do with its control and sd_notify messages
// (issue 11 finding 7). Pure: time is passed in.
#pragma once

#include <cstddef>
#include <cstdint>

#include "clock.h"
#include "output.h"

namespace deployctl {

// A token bucket over messages, shared by a replica's control and notify sockets: `rate` a
// second, `burst` banked. A message read while the bucket is empty is dropped undecoded and
// counted. Reading comes in batches of at most kBatch messages; after a batch that ended with a
// drop, reading pauses until a batch's worth is back. So a flooder makes the supervisor read at
// most about twice `rate` messages a second (about half of them dropped); the rest waits in the
// socket, where it blocks the sender.
class MessageBudget {
 public:
  static constexpr double kRate = 200;    // messages a second: 100 x a 10 ms health interval
  static constexpr double kBurst = 400;
  static constexpr int kBatch = 64;       // messages read per wake-up at most

  explicit MessageBudget(TimePoint now, double rate = kRate, double burst = kBurst)
      : bucket_(rate, burst, now) {}

  // Whether to handle a message read at `now` (else it is dropped and counted).
  bool admit(TimePoint now);
  // How long to wait before reading again: 0 unless the last message was dropped, then until
  // a batch's worth of messages may be handled.
  Duration pause(TimePoint now);
  std::uint64_t dropped() const { return dropped_; }

 private:
  ReadBudget bucket_;
  bool dropping_ = false;
  std::uint64_t dropped_ = 0;
};

}  // namespace deployctl
