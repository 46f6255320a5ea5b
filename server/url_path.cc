#include "url_path.h"

namespace deployctl::http {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool has_dot_dot_segment(std::string_view path) {
  while (!path.empty()) {
    std::size_t slash = path.find('/');
    if (path.substr(0, slash) == "..") return true;
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return false;
}

}  // namespace

DecodedPath decode_request_path(std::string_view raw) {
  DecodedPath result;
  if (raw.empty() || raw.front() != '/') {
    result.error = PathError::not_absolute;
    return result;
  }
  result.path.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      int high = i + 2 < raw.size() ? hex_value(raw[i + 1]) : -1;
      int low = high >= 0 ? hex_value(raw[i + 2]) : -1;
      if (low < 0) {
        result.error = PathError::bad_escape;
        return result;
      }
      c = static_cast<char>(high * 16 + low);
      i += 2;
    }
    if (c == '\0') {
      result.error = PathError::nul_byte;
      return result;
    }
    result.path.push_back(c);
  }
  if (has_dot_dot_segment(result.path)) result.error = PathError::dot_dot_segment;
  return result;
}

}  // namespace deployctl::http
