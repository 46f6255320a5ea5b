// libFuzzer target: the worker control protocol decoder must accept any bytes without crashing,
// and what it accepts must re-encode to something it accepts again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto decoded = deployctl::control::decode(input);
  if (decoded.message.has_value() == !decoded.error.empty()) std::abort();
  if (decoded.message && decoded.message->pong) {
    auto again = deployctl::control::decode(deployctl::control::encode_pong(
        *decoded.message->pong, decoded.message->requests.value_or(0),
        decoded.message->inflight.value_or(0)));
    if (!again.message || again.message->pong != decoded.message->pong) std::abort();
  }
  return 0;
}
