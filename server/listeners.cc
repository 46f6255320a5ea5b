#include "listeners.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/v6_only.hpp>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace deployctl::server {
namespace {

constexpr int kFirstInheritedFd = 3;

std::optional<long> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr) return std::nullopt;
  std::string_view view(text);
  long value = 0;
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size()) return std::nullopt;
  return value;
}

// How many sockets the environment passes to this process (0 if none or meant for another).
int inherited_socket_count() {
  auto pid = env_number("LISTEN_PID");
  auto count = env_number("LISTEN_FDS");
  if (!pid || !count || *pid != ::getpid() || *count <= 0 || *count > 1024) return 0;
  return static_cast<int>(*count);
}

std::string adopt(boost::asio::io_context& io, int fd, Listeners& out) {
  std::string where = "inherited fd " + std::to_string(fd) + " (LISTEN_FDS)";
  int type = 0, listening = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_STREAM) {
    return where + " is not a stream socket";
  }
  length = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening) {
    return where + " is not listening";
  }
  sockaddr_storage address{};
  length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      (address.ss_family != AF_INET && address.ss_family != AF_INET6)) {
    return where + " is not a TCP/IP socket";
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto protocol =
      address.ss_family == AF_INET ? boost::asio::ip::tcp::v4() : boost::asio::ip::tcp::v6();
  boost::asio::ip::tcp::acceptor acceptor(io);
  boost::system::error_code error;
  acceptor.assign(protocol, fd, error);
  if (error) return where + ": " + error.message();
  out.acceptors.push_back(std::move(acceptor));
  return {};
}

std::string bind(boost::asio::io_context& io, const ListenAddress& address, Listeners& out) {
  std::string where = address.host + ":" + std::to_string(address.port);
  boost::system::error_code error;
  auto ip = boost::asio::ip::make_address(address.host, error);
  if (error) return "--listen " + where + ": " + error.message();
  boost::asio::ip::tcp::endpoint endpoint(ip, address.port);
  boost::asio::ip::tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol(), error);
  if (!error) acceptor.set_option(boost::asio::socket_base::reuse_address(true), error);
  if (!error && ip.is_v6()) acceptor.set_option(boost::asio::ip::v6_only(true), error);
  if (!error) acceptor.bind(endpoint, error);
  if (!error) acceptor.listen(boost::asio::socket_base::max_listen_connections, error);
  if (error) {
    return "cannot listen on " + where + ": " + error.message() +
           " (is another process using it? choose another --listen address)";
  }
  out.acceptors.push_back(std::move(acceptor));
  return {};
}

}  // namespace

Listeners open_listeners(boost::asio::io_context& io, const std::vector<ListenAddress>& addresses) {
  Listeners result;
  if (int count = inherited_socket_count(); count > 0) {
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDNAMES");
    result.inherited = true;
    for (int fd = kFirstInheritedFd; fd < kFirstInheritedFd + count; ++fd) {
      result.error = adopt(io, fd, result);
      if (!result.error.empty()) return result;
    }
    return result;
  }
  for (const auto& address : addresses) {
    result.error = bind(io, address, result);
    if (!result.error.empty()) return result;
  }
  return result;
}

std::string describe(const boost::asio::ip::tcp::endpoint& endpoint) {
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace deployctl::server
