#include "replica_sockets.h"

#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "proc_stats.h"
#include "steering.h"

namespace deployctl {

json::Value carried_groups_json(const CarriedGroups& groups, bool with_fds) {
  json::Value out = json::Value::object();
  for (const auto& [service, addresses] : groups) {
    for (const auto& [address, sockets] : addresses) {
      json::Value list = json::Value::array();
      for (const auto& socket : sockets) {
        json::Value entry{{"replica", socket.owner}};
        if (with_fds) entry["fd"] = socket.fd;
        list.push_back(std::move(entry));
      }
      out[service][address] = std::move(list);
    }
  }
  return out;
}

CarriedGroups carried_groups_from_json(const json::Value& value) {
  CarriedGroups groups;
  for (const auto& [service, addresses] : json::as_object(value)) {
    for (const auto& [address, sockets] : json::as_object(addresses)) {
      auto& group = groups[service][address];
      for (const auto& entry : json::as_array(sockets)) {
        const auto owner = json::as_int(json::get(entry, "replica"), -1);
        if (owner <= 0) continue;
        group.push_back({static_cast<std::uint64_t>(owner),
                         static_cast<int>(json::as_int(json::get(entry, "fd"), -1))});
      }
    }
  }
  return groups;
}

ReplicaSockets::ReplicaSockets(boost::asio::io_context& io, ListenAddress address)
    : io_(io), address_(std::move(address)) {}

ReplicaSockets::~ReplicaSockets() {
  watches_.clear();
  for (auto& socket : sockets_) ::close(socket.fd);
}

int ReplicaSockets::find(std::uint64_t owner) const {
  for (const auto& socket : sockets_) {
    if (socket.replica == owner) return socket.fd;
  }
  return -1;
}

std::vector<std::uint64_t> ReplicaSockets::order() const {
  std::vector<std::uint64_t> owners;
  for (const auto& socket : sockets_) owners.push_back(socket.replica);
  return owners;
}

int ReplicaSockets::open(std::uint64_t owner, std::string* error) {
  if (int fd = find(owner); fd >= 0) return fd;
  // A new socket joins at the end: the indices of the others stay, so the attached program
  // stays right (it never names the new index). A first socket makes a new group: attach again.
  const int fd = bind_listen_socket(address_, true, error);
  if (fd < 0) return -1;
  sockets_.push_back({address_, fd, owner});
  if (sockets_.size() == 1 && !attach(order(), active_, error)) {
    close(owner);
    return -1;
  }
  return fd;
}

void ReplicaSockets::adopt(std::uint64_t owner, int fd) {
  sockets_.push_back({address_, fd, owner});
}

bool ReplicaSockets::attach(const std::vector<std::uint64_t>& order,
                            const std::vector<std::uint64_t>& active, std::string* error) {
  if (sockets_.empty()) return true;
  const auto program = steering_program(steer_indices(order, active));
  std::vector<sock_filter> filter;
  for (const auto& op : program) filter.push_back({op.code, op.jt, op.jf, op.k});
  sock_fprog fprog{static_cast<unsigned short>(filter.size()), filter.data()};
  if (setsockopt(sockets_.front().fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) !=
      0) {
    *error = "cannot steer connections on " + address_.text +
             " (SO_ATTACH_REUSEPORT_CBPF): " + std::strerror(errno);
    return false;
  }
  return true;
}

bool ReplicaSockets::steer(std::vector<std::uint64_t> active, std::string* error) {
  active_ = std::move(active);
  return attach(order(), active_, error);
}

void ReplicaSockets::when_queue_empty(std::uint64_t owner, std::function<void()> on_empty) {
  auto& timer = watches_[owner];
  timer = std::make_unique<boost::asio::steady_timer>(io_);
  poll_queue(owner, std::move(on_empty));
}

void ReplicaSockets::poll_queue(std::uint64_t owner, std::function<void()> on_empty) {
  const int fd = find(owner);
  const auto it = watches_.find(owner);
  if (fd < 0 || it == watches_.end()) return;
  const auto queue = accept_queue(fd);
  if (!queue || queue->length == 0) {
    watches_.erase(it);
    on_empty();
    return;
  }
  it->second->expires_after(std::chrono::milliseconds(10));
  it->second->async_wait(
      [this, owner, on_empty = std::move(on_empty)](boost::system::error_code ec) mutable {
        if (!ec) poll_queue(owner, std::move(on_empty));
      });
}

// The kernel moves the last socket into the closed one's index. Until the program for the new
// order is attached, the old one must send nothing to either index: first attach one without
// the last socket's owner (its index and the closed one's are the only ones that change).
std::uint32_t ReplicaSockets::close(std::uint64_t owner) {
  const auto at = std::find_if(sockets_.begin(), sockets_.end(),
                               [owner](const ListenSocket& s) { return s.replica == owner; });
  if (at == sockets_.end()) return 0;
  watches_.erase(owner);
  const auto queue = accept_queue(at->fd);
  std::string ignored;
  const std::uint64_t last = sockets_.back().replica;
  if (last != owner) {
    auto without_last = active_;
    std::erase(without_last, last);
    std::erase(without_last, owner);
    if (!without_last.empty()) attach(order(), without_last, &ignored);
  }
  ::close(at->fd);
  *at = sockets_.back();
  sockets_.pop_back();
  attach(order(), active_, &ignored);
  return queue ? queue->length : 0;
}

}  // namespace deployctl
