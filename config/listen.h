// Internal to config/: "HOST:PORT" listen addresses.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "spec.h"

namespace deployctl::detail {

// "127.0.0.1:8000", "[::1]:8000", "localhost:8000" (= 127.0.0.1). The host is stored in
// canonical numeric form so equal addresses compare equal; text keeps what was written.
std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* error);

}  // namespace deployctl::detail
