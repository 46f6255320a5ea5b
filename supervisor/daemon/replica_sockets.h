// The per-replica sockets of one service address (`sockets = "per-replica"`; edge): one
// SO_REUSEPORT listener per replica, all in one kernel reuseport group, with a classic BPF
// program (SO_ATTACH_REUSEPORT_CBPF, unprivileged) that sends new connections only to the
// sockets of the replicas given to steer(). Which replicas those are, and when, is the core's
// (core/steering.h, the replica machine's quiescing state); this performs it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "json.h"
#include "listen_sockets.h"

namespace deployctl {

// The per-replica sockets a supervisor hands to its successor: service -> address text ->
// sockets in group order (fd -1 where only the order is recorded, as in STATE/adopt.json).
struct CarriedSocket {
  std::uint64_t owner = 0;
  int fd = -1;
};
using CarriedGroups = std::map<std::string, std::map<std::string, std::vector<CarriedSocket>>>;
// {"web": {"127.0.0.1:8000": [{"replica": 3, "fd": 12}, ...]}}; "fd" only if `with_fds`.
json::Value carried_groups_json(const CarriedGroups& groups, bool with_fds);
// The inverse; malformed entries are skipped.
CarriedGroups carried_groups_from_json(const json::Value& value);

class ReplicaSockets {
 public:
  ReplicaSockets(boost::asio::io_context& io, ListenAddress address);
  ~ReplicaSockets();  // closes every socket
  ReplicaSockets(const ReplicaSockets&) = delete;
  ReplicaSockets& operator=(const ReplicaSockets&) = delete;

  const ListenAddress& address() const { return address_; }
  // Every socket, in group (kernel index) order; ListenSocket::replica is its owner.
  const std::vector<ListenSocket>& sockets() const { return sockets_; }
  // The socket of `owner` (-1: none).
  int find(std::uint64_t owner) const;
  // The socket of `owner`, bound and listening at the end of the group (made on first call and
  // steered to as before: the program sends it nothing until steer() names it). -1 and *error
  // when it cannot be bound.
  int open(std::uint64_t owner, std::string* error);
  // Takes over `fd`, an open socket of this group, as `owner`'s, after the ones taken so far
  // (after an upgrade in place or a crash; call in group order). The program attached to the
  // group keeps working until the next steer() replaces it.
  void adopt(std::uint64_t owner, int fd);
  // Sends new connections to the sockets of `active` only (owners without a socket are
  // skipped; none: the kernel spreads them over every socket). Returns false with *error.
  bool steer(std::vector<std::uint64_t> active, std::string* error);
  // Calls `on_empty` once `owner`'s accept queue is empty (polled every 10 ms; never if the
  // socket is closed first).
  void when_queue_empty(std::uint64_t owner, std::function<void()> on_empty);
  // Closes `owner`'s socket, steering stays right while the kernel moves the last socket into
  // its index. Returns how many connections were still queued (the kernel resets them).
  std::uint32_t close(std::uint64_t owner);

 private:
  bool attach(const std::vector<std::uint64_t>& order, const std::vector<std::uint64_t>& active,
              std::string* error);
  std::vector<std::uint64_t> order() const;
  void poll_queue(std::uint64_t owner, std::function<void()> on_empty);

  boost::asio::io_context& io_;
  ListenAddress address_;
  std::vector<ListenSocket> sockets_;
  std::vector<std::uint64_t> active_;
  std::map<std::uint64_t, std::unique_ptr<boost::asio::steady_timer>> watches_;
};

}  // namespace deployctl
