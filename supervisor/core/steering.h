// Steering new connections among the per-replica sockets of one address (`sockets =
// "per-replica"`, docs/design-notes.md "Per-replica sockets"). Pure: the daemon binds, attaches
// and closes (daemon/replica_sockets.h).
//
// Kernel model (Linux, SO_REUSEPORT TCP listeners): the sockets of a reuseport group have
// indices 0..n-1 in the order they started listening; closing the socket at index i moves the
// last one (n-1) into i. A classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF returns
// the index of the socket that gets a new connection; an index >= n makes the kernel fall back
// to its own hash over every socket of the group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "deployment_state.h"

namespace deployctl {

// One classic BPF instruction, laid out as the kernel's struct sock_filter.
struct BpfInstruction {
  std::uint16_t code = 0;
  std::uint8_t jt = 0;
  std::uint8_t jf = 0;
  std::uint32_t k = 0;
  bool operator==(const BpfInstruction&) const = default;
};

// The replicas new connections should go to: the ready ones; while none is, the starting ones
// (at `up`, or when every ready one failed); else none (the kernel's hash over all). Never a
// quiescing, draining or stopping one while another is ready or starting.
std::vector<std::uint64_t> steer_targets(const ServiceState& service);

// The group's sockets by owner (replica serial), in kernel index order.
using GroupOrder = std::vector<std::uint64_t>;

// The order after `owner`'s socket is closed (the last one moves into its place). Unchanged if
// `owner` is not in the group.
GroupOrder order_after_close(GroupOrder order, std::uint64_t owner);

// The group's order after a supervisor that recorded `recorded` died or re-executed, given the
// owners whose sockets are still open (`open`, e.g. what the fd keeper handed back): every
// recorded owner not open is taken as closed, in recorded order (exact when at most one is
// missing; a crash between two closes and the next record can leave more). Owners open but
// not recorded are not in the result: they were appended last, so the rest keep their indices.
GroupOrder recovered_order(const GroupOrder& recorded, const std::vector<std::uint64_t>& open);

// The group indices of `active`'s sockets, ascending; owners not in the group are skipped.
std::vector<std::uint32_t> steer_indices(const GroupOrder& order,
                                         const std::vector<std::uint64_t>& active);

// A program that spreads connections uniformly at random over `indices` (ld rand; mod n; a
// jump table). With no indices it returns an out-of-range index: the kernel's own hash. Only
// the first kMaxSteerTargets indices are used (the jump offsets are 8 bits).
std::vector<BpfInstruction> steering_program(const std::vector<std::uint32_t>& indices);
inline constexpr std::size_t kMaxSteerTargets = 250;

// What a program returns for a given value of `ld rand` (an interpreter of the instructions
// steering_program emits, for tests). An unknown instruction returns 0.
std::uint32_t run_steering_program(const std::vector<BpfInstruction>& program,
                                   std::uint32_t random);

}  // namespace deployctl
