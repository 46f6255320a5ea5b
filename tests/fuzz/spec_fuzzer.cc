// libFuzzer target: parse_spec on arbitrary bytes must not crash, throw or break its contract
// (exactly one of spec / errors), and every value parser must survive the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "load.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const deployctl::LoadResult result = deployctl::parse_spec(text, "/fuzz/deploy.toml");
  if (result.spec.has_value() == !result.errors.empty()) std::abort();
  for (const deployctl::SpecError& error : result.errors) {
    if (error.message.empty() || error.to_string().empty()) std::abort();
  }

  std::string error;
  (void)deployctl::parse_duration(text, &error);
  (void)deployctl::parse_size(text, &error);
  (void)deployctl::split_command(text, &error);
  (void)deployctl::expand_placeholders(text, 7, 9000);
  if (const auto signal = deployctl::parse_signal(text)) {
    if (deployctl::parse_signal(deployctl::signal_name(*signal)) != signal) std::abort();
  }
  return 0;
}
