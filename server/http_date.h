// HTTP dates (RFC 9110 IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT", always 29 characters.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace deployctl::http {

inline constexpr std::size_t kHttpDateLength = 29;
using HttpDate = std::array<char, kHttpDateLength>;

// Pure. `unix_seconds` is seconds since 1970-01-01T00:00:00Z; years 1970..9999.
HttpDate format_http_date(std::int64_t unix_seconds);

inline std::string_view view(const HttpDate& date) { return {date.data(), date.size()}; }

}  // namespace deployctl::http
