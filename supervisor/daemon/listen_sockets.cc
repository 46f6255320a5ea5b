#include "listen_sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace deployctl {

int bind_listen_socket(const ListenAddress& address, bool reuseport, std::string* error) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(address.port);
    length = sizeof *v4;
  } else if (inet_pton(AF_INET6, address.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(address.port);
    length = sizeof *v6;
  } else {
    *error = "cannot listen on " + address.text + ": not a numeric address";
    return -1;
  }
  int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      (storage.ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
      // Accepted sockets inherit TCP_NODELAY from the listener: replicas that never set it
      // (uvicorn --fd takes fd 3 for a unix socket) would otherwise wait ~40 ms on Nagle
      // meeting the client's delayed ACK whenever a response takes two writes.
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = "cannot listen on " + address.text + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

std::vector<ListenSocket> bind_listen_sockets(const std::vector<ListenAddress>& addresses,
                                              std::string* error) {
  std::vector<ListenSocket> sockets;
  for (const auto& address : addresses) {
    int fd = bind_listen_socket(address, false, error);
    if (fd < 0) {
      close_listen_sockets(sockets);
      return {};
    }
    sockets.push_back({address, fd});
  }
  return sockets;
}

void close_listen_sockets(std::vector<ListenSocket>& sockets) {
  for (auto& socket : sockets) {
    if (socket.fd >= 0) close(socket.fd);
  }
  sockets.clear();
}

std::optional<ListenSocket> take_listen_socket(std::vector<ListenSocket>& sockets,
                                               const ListenAddress& address) {
  for (auto& socket : sockets) {
    if (socket.fd < 0 || !(socket.address == address)) continue;
    return ListenSocket{socket.address, std::exchange(socket.fd, -1)};
  }
  return std::nullopt;
}

}  // namespace deployctl
