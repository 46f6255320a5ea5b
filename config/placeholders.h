// Internal to config/: finding the {name} placeholders of a command or env value.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deployctl::detail {

// Appends the name inside every {name} of text to *names ("{{" and "}}" are literal braces).
// Returns an error message for a '{' that is never closed.
std::optional<std::string> scan_placeholders(std::string_view text,
                                             std::vector<std::string>* names);

}  // namespace deployctl::detail
