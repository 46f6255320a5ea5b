// Request paths made safe to join to a directory: percent-decoded and checked.
#pragma once

#include <string>
#include <string_view>

namespace deployctl::http {

enum class PathError { none, not_absolute, bad_escape, nul_byte, dot_dot_segment };

struct DecodedPath {
  std::string path;  // error == none only: starts with '/', no NUL, no ".." segment
  PathError error = PathError::none;
};

// Pure. `raw` is the path part of an origin-form target (no query). "%2F" decodes to '/' and
// is then checked like any other '/'. '+' is left as is (it means space only in queries).
DecodedPath decode_request_path(std::string_view raw);

}  // namespace deployctl::http
