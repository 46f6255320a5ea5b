// libFuzzer target: the PEM certificate and key inspection behind `validate` and `status`
// (config/certificate.h) is fed whatever a certificate file may hold. Any bytes: no crash, and
// every refusal says what is wrong. The input is split at its first NUL into a certificate and
// a key part, so both parsers and their pairing are reached.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "certificate.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace deployctl;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto split = input.find('\0');
  std::string_view cert = input.substr(0, split);
  std::string_view key = split == std::string_view::npos ? input : input.substr(split + 1);
  auto facts = inspect_certificate(cert);
  if (auto* problem = std::get_if<std::string>(&facts)) {
    if (problem->empty()) std::abort();
  } else {
    const auto& leaf = std::get<CertificateFacts>(facts);
    if (leaf.chain_length < 1) std::abort();
    (void)format_utc(leaf.not_after);
  }
  if (auto mismatch = key_mismatch(cert, key); mismatch && mismatch->empty()) std::abort();
  return 0;
}
