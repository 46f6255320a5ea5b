#include "steering.h"

#include <algorithm>

namespace deployctl {
namespace {

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h), spelled out: the core includes
// no system headers.
constexpr std::uint16_t kLdAbsW = 0x20;          // BPF_LD | BPF_W | BPF_ABS
constexpr std::uint16_t kAluModK = 0x94;         // BPF_ALU | BPF_MOD | BPF_K
constexpr std::uint16_t kJeqK = 0x15;            // BPF_JMP | BPF_JEQ | BPF_K
constexpr std::uint16_t kRetK = 0x06;            // BPF_RET | BPF_K
constexpr std::uint32_t kAdRandom = 0xfffff038;  // SKF_AD_OFF + SKF_AD_RANDOM
constexpr std::uint32_t kFallback = 0xffffffff;  // out of range: the kernel's hash

}  // namespace

std::vector<std::uint64_t> steer_targets(const ServiceState& service) {
  std::vector<std::uint64_t> ready, starting;
  for (const auto& [index, replica] : service.replicas) {
    if (replica.machine.state == ReplicaState::ready) ready.push_back(replica.serial);
    if (replica.machine.state == ReplicaState::starting) starting.push_back(replica.serial);
  }
  return ready.empty() ? starting : ready;
}

GroupOrder order_after_close(GroupOrder order, std::uint64_t owner) {
  const auto at = std::find(order.begin(), order.end(), owner);
  if (at == order.end()) return order;
  *at = order.back();
  order.pop_back();
  return order;
}

GroupOrder recovered_order(const GroupOrder& recorded, const std::vector<std::uint64_t>& open) {
  GroupOrder order = recorded;
  for (const std::uint64_t owner : recorded) {
    if (std::find(open.begin(), open.end(), owner) == open.end()) {
      order = order_after_close(std::move(order), owner);
    }
  }
  return order;
}

std::vector<std::uint32_t> steer_indices(const GroupOrder& order,
                                         const std::vector<std::uint64_t>& active) {
  std::vector<std::uint32_t> indices;
  for (std::uint32_t i = 0; i < order.size(); ++i) {
    if (std::find(active.begin(), active.end(), order[i]) != active.end()) indices.push_back(i);
  }
  return indices;
}

// ld rand; mod n; then for each j < n-1: jeq j → ret indices[j]; the last falls through.
std::vector<BpfInstruction> steering_program(const std::vector<std::uint32_t>& indices) {
  if (indices.empty()) return {{.code = kRetK, .k = kFallback}};
  if (indices.size() == 1) return {{.code = kRetK, .k = indices.front()}};
  const std::size_t n = std::min(indices.size(), kMaxSteerTargets);
  std::vector<BpfInstruction> program{{.code = kLdAbsW, .k = kAdRandom},
                                      {.code = kAluModK, .k = static_cast<std::uint32_t>(n)}};
  // Tests j = 0..n-2 in a row, then the n returns: test j jumps over the n-2-j tests after
  // it, the fall-through return and the j returns before its own: n-1 for every j.
  const auto skip = static_cast<std::uint8_t>(n - 1);
  for (std::size_t j = 0; j + 1 < n; ++j) {
    program.push_back({.code = kJeqK, .jt = skip, .jf = 0, .k = static_cast<std::uint32_t>(j)});
  }
  program.push_back({.code = kRetK, .k = indices[n - 1]});  // A == n-1: every test failed
  for (std::size_t j = 0; j + 1 < n; ++j) program.push_back({.code = kRetK, .k = indices[j]});
  return program;
}

std::uint32_t run_steering_program(const std::vector<BpfInstruction>& program,
                                   std::uint32_t random) {
  std::uint32_t a = 0;
  for (std::size_t pc = 0; pc < program.size(); ++pc) {
    const auto& op = program[pc];
    switch (op.code) {
      case kLdAbsW:
        a = op.k == kAdRandom ? random : 0;
        break;
      case kAluModK:
        a = op.k ? a % op.k : 0;
        break;
      case kJeqK:
        pc += a == op.k ? op.jt : op.jf;
        break;
      case kRetK:
        return op.k;
      default:
        return 0;
    }
  }
  return 0;
}

}  // namespace deployctl
