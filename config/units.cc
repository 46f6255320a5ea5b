// parse_duration and parse_size: numbers with units, computed in integer arithmetic so that
// "1.1s" is exactly 1100ms.
#include <array>
#include <cctype>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "load.h"

namespace deployctl {
namespace {

constexpr std::int64_t kMaxDurationMs = 365LL * 24 * 3600 * 1000;
constexpr std::uint64_t kMaxSize = std::numeric_limits<std::int64_t>::max();

// "12.5" split into whole = 12 and fraction digits "5". Whole parts above `cap` report overflow.
struct Decimal {
  std::uint64_t whole = 0;
  std::string_view fraction;
  bool overflow = false;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads a decimal number at text[*pos]; false (pos unchanged) when no digit is there.
bool read_decimal(std::string_view text, std::size_t* pos, std::uint64_t cap, Decimal* out) {
  std::size_t i = *pos;
  Decimal number;
  while (i < text.size() && is_digit(text[i])) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (number.whole > (cap - digit) / 10) number.overflow = true;
    if (!number.overflow) number.whole = number.whole * 10 + digit;
    ++i;
  }
  if (i == *pos) return false;
  if (i + 1 < text.size() && text[i] == '.' && is_digit(text[i + 1])) {
    const std::size_t start = ++i;
    while (i < text.size() && is_digit(text[i])) ++i;
    number.fraction = text.substr(start, i - start);
  }
  *pos = i;
  *out = number;
  return true;
}

std::uint64_t fraction_digits_value(std::string_view digits) {
  std::uint64_t value = 0;
  for (char c : digits) value = value * 10 + static_cast<std::uint64_t>(c - '0');
  return value;
}

std::uint64_t power_of_ten(std::size_t exponent) {
  std::uint64_t value = 1;
  for (std::size_t i = 0; i < exponent; ++i) value *= 10;
  return value;
}

bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text.substr(0, 40)) {
    const auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte == 0x7f) ? '?' : c;
  }
  if (text.size() > 40) out += "...";
  return out + "\"";
}

struct DurationUnit {
  std::string_view name;
  std::int64_t ms;
};
constexpr std::array<DurationUnit, 4> kDurationUnits{
    {{"h", 3600 * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1}}};

// Index into kDurationUnits, or -1.
int duration_unit_index(std::string_view name) {
  for (std::size_t i = 0; i < kDurationUnits.size(); ++i) {
    if (kDurationUnits[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

// One "<number><unit>" component; adds its milliseconds to *total_ms.
bool read_duration_part(std::string_view text, std::size_t* pos, int* previous_unit,
                        std::int64_t* total_ms, std::string* error) {
  const std::string what = "invalid duration " + quoted(text) + ": ";
  Decimal number;
  if (!read_decimal(text, pos, kMaxDurationMs, &number)) {
    if (text[*pos] == '-') return fail(error, what + "durations cannot be negative");
    return fail(error, what + "expected a number, e.g. \"500ms\" or \"1m30s\"");
  }
  const std::size_t unit_start = *pos;
  while (*pos < text.size() && std::isalpha(static_cast<unsigned char>(text[*pos]))) ++*pos;
  const std::string_view unit_text = text.substr(unit_start, *pos - unit_start);
  if (unit_text.empty()) {
    if (*pos < text.size()) return fail(error, what + "unexpected " + quoted(text.substr(*pos, 1)));
    return fail(error, what + "durations need a unit, e.g. \"500ms\" or \"2s\"");
  }
  const int unit = duration_unit_index(unit_text);
  if (unit < 0) {
    return fail(error, what + "unknown unit " + quoted(unit_text) + "; use ms, s, m or h");
  }
  if (unit <= *previous_unit) {
    return fail(error, what + "give each unit once, largest first, e.g. \"1m30s\"");
  }
  *previous_unit = unit;
  const auto unit_ms = static_cast<std::uint64_t>(kDurationUnits[unit].ms);
  if (number.overflow || number.fraction.size() > 9) {
    return fail(error, what + "too large or too precise (at most 8760h, whole milliseconds)");
  }
  const std::uint64_t scale = power_of_ten(number.fraction.size());
  const std::uint64_t fraction_ms = fraction_digits_value(number.fraction) * unit_ms;
  if (fraction_ms % scale != 0) {
    return fail(error, what + "durations are whole milliseconds");
  }
  const std::uint64_t part = number.whole * unit_ms + fraction_ms / scale;
  if (part > static_cast<std::uint64_t>(kMaxDurationMs - *total_ms)) {
    return fail(error, what + "too long (at most 8760h, one year)");
  }
  *total_ms += static_cast<std::int64_t>(part);
  return true;
}

struct SizeSuffix {
  std::string_view name;  // upper case
  std::uint64_t bytes;
};
constexpr std::uint64_t kKiB = 1024;
constexpr std::array<SizeSuffix, 14> kSizeSuffixes{{{"", 1},
                                                    {"B", 1},
                                                    {"K", kKiB},
                                                    {"KB", kKiB},
                                                    {"KIB", kKiB},
                                                    {"M", kKiB * kKiB},
                                                    {"MB", kKiB * kKiB},
                                                    {"MIB", kKiB * kKiB},
                                                    {"G", kKiB * kKiB * kKiB},
                                                    {"GB", kKiB * kKiB * kKiB},
                                                    {"GIB", kKiB * kKiB * kKiB},
                                                    {"T", kKiB * kKiB * kKiB * kKiB},
                                                    {"TB", kKiB * kKiB * kKiB * kKiB},
                                                    {"TIB", kKiB * kKiB * kKiB * kKiB}}};

std::optional<std::uint64_t> size_multiplier(std::string_view suffix) {
  std::string upper;
  for (char c : suffix) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const SizeSuffix& known : kSizeSuffixes) {
    if (known.name == upper) return known.bytes;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, std::string* error) {
  if (text.empty()) {
    fail(error, "invalid duration \"\": give a number with a unit, e.g. \"500ms\" or \"2s\"");
    return std::nullopt;
  }
  std::size_t pos = 0;
  int previous_unit = -1;
  std::int64_t total_ms = 0;
  while (pos < text.size()) {
    if (!read_duration_part(text, &pos, &previous_unit, &total_ms, error)) return std::nullopt;
  }
  return Duration{total_ms};
}

std::optional<std::uint64_t> parse_size(std::string_view text, std::string* error) {
  const std::string what = "invalid size " + quoted(text) + ": ";
  std::size_t pos = 0;
  Decimal number;
  if (text.empty() || !read_decimal(text, &pos, kMaxSize, &number)) {
    const bool negative = !text.empty() && text[0] == '-';
    fail(error, what + (negative ? "sizes cannot be negative"
                                 : "expected a number of bytes or a size such as \"512MiB\""));
    return std::nullopt;
  }
  const std::string_view suffix = text.substr(pos);
  const std::optional<std::uint64_t> multiplier = size_multiplier(suffix);
  if (!multiplier) {
    fail(error, what + "unknown unit " + quoted(suffix) + "; use K, M, G, T, KiB, MiB, GiB or TiB");
    return std::nullopt;
  }
  if (number.overflow || number.whole > kMaxSize / *multiplier || number.fraction.size() > 6) {
    fail(error, what + "too large or too precise");
    return std::nullopt;
  }
  const std::uint64_t fraction_bytes = fraction_digits_value(number.fraction) * *multiplier /
                                       power_of_ten(number.fraction.size());
  const std::uint64_t whole_bytes = number.whole * *multiplier;
  if (fraction_bytes > kMaxSize - whole_bytes) {
    fail(error, what + "too large");
    return std::nullopt;
  }
  return whole_bytes + fraction_bytes;
}

}  // namespace deployctl
