// Content-Type by file name extension (case-insensitive); application/octet-stream otherwise.
#pragma once

#include <string_view>

namespace deployctl::http {

// Pure. The result is a static string.
std::string_view content_type_for(std::string_view file_name);

}  // namespace deployctl::http
