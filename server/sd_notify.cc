#include "sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "unique_fd.h"

namespace deployctl::server {

std::string sd_notify_send(std::string_view socket_name, std::string_view message) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_name.size() < 2 || socket_name.size() >= sizeof address.sun_path ||
      (socket_name.front() != '/' && socket_name.front() != '@')) {
    return "NOTIFY_SOCKET=" + std::string(socket_name) +
           " is not an absolute path or @abstract name";
  }
  std::memcpy(address.sun_path, socket_name.data(), socket_name.size());
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_name.size());

  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::string("socket(AF_UNIX): ") + std::strerror(errno);
  if (::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&address), length) < 0) {
    return "NOTIFY_SOCKET=" + std::string(socket_name) + ": " + std::strerror(errno);
  }
  return {};
}

}  // namespace deployctl::server
