// sd_notify(3) without libsystemd: one datagram to the AF_UNIX socket named by NOTIFY_SOCKET
// (a leading '@' names an abstract socket).
#pragma once

#include <string>
#include <string_view>

namespace deployctl::server {

// Returns an empty string on success, else what went wrong.
std::string sd_notify_send(std::string_view socket_name, std::string_view message);

}  // namespace deployctl::server
