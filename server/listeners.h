// The listening sockets: inherited ones (systemd convention: LISTEN_FDS sockets from fd 3 on,
// used only when LISTEN_PID is this process), else bound from the --listen addresses.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <string>
#include <vector>

#include "server_options.h"

namespace deployctl::server {

struct Listeners {
  std::vector<boost::asio::ip::tcp::acceptor> acceptors;
  bool inherited = false;
  std::string error;  // non-empty on failure: what, where, and what to do
};

// Unsets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES when it uses them. Bound sockets get
// SO_REUSEADDR (and IPV6_V6ONLY for IPv6).
Listeners open_listeners(boost::asio::io_context& io, const std::vector<ListenAddress>& addresses);

std::string describe(const boost::asio::ip::tcp::endpoint& endpoint);

}  // namespace deployctl::server
