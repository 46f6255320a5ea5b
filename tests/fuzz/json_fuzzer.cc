// libFuzzer target: any bytes must parse or fail cleanly; whatever parses must survive
// dump -> parse unchanged, and dumping again must give the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "json.h"

namespace json = deployctl::json;

// Equal, and every number kept its kind (int64 or double), which operator== ignores.
bool identical(const json::Value& a, const json::Value& b) {
  if (!(a == b) || a.is_integer() != b.is_integer()) return false;
  for (std::size_t i = 0; i < a.as_array().size(); ++i) {
    if (!identical(a.as_array()[i], b.as_array()[i])) return false;
  }
  for (std::size_t i = 0; i < a.as_object().size(); ++i) {
    if (!identical(a.as_object()[i].second, b.as_object()[i].second)) return false;
  }
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  json::ParseError error;
  auto value = json::parse(text, &error);
  if (!value) {
    if (error.offset > size || error.message.empty()) {
      std::fprintf(stderr, "bad error report: offset %zu of %zu: %s\n", error.offset, size,
                   error.message.c_str());
      std::abort();
    }
    return 0;
  }
  std::string first = json::dump(*value);
  auto again = json::parse(first, &error);
  if (!again || !identical(*again, *value) || json::dump(*again) != first) {
    std::fprintf(stderr, "round trip mismatch for dump: %s\n", first.c_str());
    std::abort();
  }
  return 0;
}
