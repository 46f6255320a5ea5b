#include "control_channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "log.h"

namespace deployctl::server {

std::optional<int> parse_fd_number(std::string_view text) {
  int fd = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || fd < 0) {
    return std::nullopt;
  }
  return fd;
}

std::unique_ptr<ControlChannel> ControlChannel::adopt(boost::asio::io_context& io, int fd,
                                                      Handlers handlers, std::string* error) {
  std::string where = std::string(control::kControlFdEnv) + "=" + std::to_string(fd);
  int type = 0;
  socklen_t length = sizeof type;
  sockaddr_storage address{};
  socklen_t address_length = sizeof address;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_SEQPACKET ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &address_length) != 0 ||
      address.ss_family != AF_UNIX) {
    *error = where + " is not an AF_UNIX SOCK_SEQPACKET socket (unset it to run standalone)";
    return nullptr;
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  boost::asio::generic::seq_packet_protocol::socket socket(io);
  boost::system::error_code assign_error;
  socket.assign(boost::asio::generic::seq_packet_protocol(AF_UNIX, 0), fd, assign_error);
  if (assign_error) {
    *error = where + ": " + assign_error.message();
    return nullptr;
  }
  return std::unique_ptr<ControlChannel>(
      new ControlChannel(std::move(socket), std::move(handlers)));
}

ControlChannel::ControlChannel(boost::asio::generic::seq_packet_protocol::socket socket,
                               Handlers handlers)
    : socket_(std::move(socket)), handlers_(std::move(handlers)) {}

void ControlChannel::start() { receive(); }

void ControlChannel::receive() {
  socket_.async_receive(boost::asio::buffer(buffer_), flags_,
                        [this](const boost::system::error_code& error, std::size_t bytes) {
                          on_receive(error, bytes);
                        });
}

void ControlChannel::on_receive(const boost::system::error_code& error, std::size_t bytes) {
  if (error == boost::asio::error::operation_aborted) return;
  if (error || bytes == 0) {  // a zero-length read is the supervisor's end closing
    peer_gone_ = true;
    handlers_.drain("control socket closed: the supervisor is gone");
    return;
  }
  if (bytes > control::kMaxMessage || (flags_ & MSG_TRUNC) != 0) {
    log_line("ignoring a control message over " + std::to_string(control::kMaxMessage) + " bytes");
    return receive();
  }
  control::DecodeResult decoded = control::decode(std::string_view(buffer_.data(), bytes));
  if (!decoded.message) {
    log_line("ignoring an undecodable control message: " + decoded.error);
    return receive();
  }
  receive();  // first: a handler may drain, and the channel keeps answering PINGs meanwhile
  if (decoded.message->ping) handlers_.ping(*decoded.message->ping);
  if (decoded.message->drain) handlers_.drain("DRAIN=1 from the supervisor");
}

void ControlChannel::send(std::string_view message) {
  if (peer_gone_) return;
  ssize_t sent =
      ::send(socket_.native_handle(), message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent < 0) {
    log_line("could not send control message " + std::string(message.substr(0, 40)) + ": " +
             std::strerror(errno));
  }
}

}  // namespace deployctl::server
