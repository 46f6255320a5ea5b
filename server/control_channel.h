// The replica's end of deployctl's worker control protocol (supervisor/control_protocol.h):
// an inherited AF_UNIX SOCK_SEQPACKET socket. Receives PING and DRAIN; sends what it is given.
#pragma once

#include <array>
#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "control_protocol.h"

namespace deployctl::server {

class ControlChannel {
 public:
  struct Handlers {
    std::function<void(std::uint64_t seq)> ping;
    std::function<void(std::string_view reason)> drain;  // DRAIN=1, or the supervisor is gone
  };

  // Takes ownership of `fd` (the value of DEPLOYCTL_CONTROL_FD). Null, with *error set, if
  // it is not an AF_UNIX SOCK_SEQPACKET socket.
  static std::unique_ptr<ControlChannel> adopt(boost::asio::io_context& io, int fd,
                                               Handlers handlers, std::string* error);

  void start();
  // Never blocks: a message that does not fit in the socket buffer is dropped and logged.
  void send(std::string_view message);

 private:
  ControlChannel(boost::asio::generic::seq_packet_protocol::socket socket, Handlers handlers);
  void receive();
  void on_receive(const boost::system::error_code& error, std::size_t bytes);

  boost::asio::generic::seq_packet_protocol::socket socket_;
  Handlers handlers_;
  std::array<char, control::kMaxMessage + 1> buffer_{};
  boost::asio::socket_base::message_flags flags_ = 0;
  bool peer_gone_ = false;
};

// DEPLOYCTL_CONTROL_FD's value as a descriptor number; nullopt unless a decimal number >= 0.
std::optional<int> parse_fd_number(std::string_view text);

}  // namespace deployctl::server
