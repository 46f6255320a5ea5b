// Steering connections among per-replica sockets: the pure model (group order, indices, the
// BPF program, the core's targets), then the same against the kernel with real SO_REUSEPORT
// sockets on 127.0.0.1 (which socket a connection lands on, before and after a close moves
// the last socket into the hole).
#include "steering.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <set>

#include "replica_sockets.h"

using namespace deployctl;

namespace {

// Where the program sends each of `samples` random draws, as index -> count.
std::map<std::uint32_t, int> spread(const std::vector<BpfInstruction>& program, int samples) {
  std::map<std::uint32_t, int> counts;
  for (int r = 0; r < samples; ++r) ++counts[run_steering_program(program, 2654435761u * r)];
  return counts;
}

}  // namespace

TEST_CASE("order_after_close: the last socket moves into the closed one's index") {
  CHECK(order_after_close({10, 11, 12, 13}, 11) == GroupOrder{10, 13, 12});
  CHECK(order_after_close({10, 11, 12, 13}, 13) == GroupOrder{10, 11, 12});
  CHECK(order_after_close({10}, 10) == GroupOrder{});
  CHECK(order_after_close({10, 11}, 99) == GroupOrder{10, 11});
}

TEST_CASE("recovered_order: the recorded order, with the sockets no longer open closed") {
  CHECK(recovered_order({10, 11, 12, 13}, {10, 11, 12, 13}) == GroupOrder{10, 11, 12, 13});
  CHECK(recovered_order({10, 11, 12, 13}, {13, 12, 11, 10}) == GroupOrder{10, 11, 12, 13});
  // One closed after the record: the last moved into its index.
  CHECK(recovered_order({10, 11, 12, 13}, {10, 12, 13}) == GroupOrder{10, 13, 12});
  CHECK(recovered_order({10, 11, 12, 13}, {10, 11, 12}) == GroupOrder{10, 11, 12});
  // Two: closed in recorded order (11 first: 13 moves into index 1; then 12, now the last).
  CHECK(recovered_order({10, 11, 12, 13}, {10, 13}) == GroupOrder{10, 13});
  CHECK(recovered_order({10, 11}, {}) == GroupOrder{});
  // Open but never recorded (bound after the last record): not part of the recovered order.
  CHECK(recovered_order({10, 11}, {10, 11, 14}) == GroupOrder{10, 11});
}

TEST_CASE("steer_indices: the group indices of the active owners, ascending") {
  CHECK(steer_indices({10, 13, 12}, {12, 13}) == std::vector<std::uint32_t>{1, 2});
  CHECK(steer_indices({10, 13, 12}, {99}).empty());
  CHECK(steer_indices({}, {1}).empty());
}

TEST_CASE("steering_program: uniform over the given indices, nothing elsewhere") {
  for (std::vector<std::uint32_t> indices :
       {std::vector<std::uint32_t>{0, 1}, {1, 3, 4}, {0, 2, 5, 6, 7, 9}}) {
    const auto counts = spread(steering_program(indices), 6000);
    CHECK(counts.size() == indices.size());
    for (auto index : indices) {
      CHECK(counts.count(index) == 1);
      const double share = counts.at(index) / 6000.0;
      CHECK(share == doctest::Approx(1.0 / indices.size()).epsilon(0.2));
    }
  }
  CHECK(steering_program({4}).size() == 1);
  CHECK(run_steering_program(steering_program({4}), 12345) == 4);
  // None: an index past any group, the kernel's own hash.
  CHECK(run_steering_program(steering_program({}), 7) == 0xffffffffu);
}

TEST_CASE("steering_program: at most kMaxSteerTargets indices, all reachable") {
  std::vector<std::uint32_t> many;
  for (std::uint32_t i = 0; i < 400; ++i) many.push_back(i);
  const auto program = steering_program(many);
  std::set<std::uint32_t> seen;
  for (std::uint32_t r = 0; r < kMaxSteerTargets; ++r)
    seen.insert(run_steering_program(program, r));
  CHECK(seen.size() == kMaxSteerTargets);
  CHECK(*seen.rbegin() == kMaxSteerTargets - 1);
  CHECK(program.size() <= 4096);  // the kernel's BPF_MAXINSNS
}

TEST_CASE("steer_targets: ready replicas; while none is, starting ones; never retiring ones") {
  ServiceState service;
  auto add = [&](int index, std::uint64_t serial, ReplicaState state) {
    service.replicas[index].serial = serial;
    service.replicas[index].machine.state = state;
  };
  add(0, 1, ReplicaState::starting);
  add(1, 2, ReplicaState::quiescing);
  CHECK(steer_targets(service) == std::vector<std::uint64_t>{1});
  add(2, 3, ReplicaState::ready);
  add(3, 4, ReplicaState::draining);
  CHECK(steer_targets(service) == std::vector<std::uint64_t>{3});
  service.replicas.clear();
  add(0, 5, ReplicaState::stopping);
  CHECK(steer_targets(service).empty());
}

// ---- against the kernel ------------------------------------------------------------------

namespace {

std::uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

int connect_to(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  return fd;
}

// Accepts everything queued on `fd` (the handshake is done once connect() returned on
// loopback); returns how many.
int drain(int fd) {
  int n = 0;
  for (int accepted; (accepted = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK)) >= 0; ++n) {
    close(accepted);
  }
  return n;
}

// Opens `count` connections; returns, per owner, how many each socket got.
std::map<std::uint64_t, int> land(ReplicaSockets& group, int count) {
  std::vector<int> clients;
  for (int i = 0; i < count; ++i) clients.push_back(connect_to(group.address().port));
  std::map<std::uint64_t, int> got;
  for (const auto& socket : group.sockets()) {
    if (int n = drain(socket.fd)) got[socket.replica] = n;
  }
  for (int fd : clients) close(fd);
  return got;
}

}  // namespace

TEST_CASE("ReplicaSockets: connections go to the steered sockets, also after a close moves one") {
  boost::asio::io_context io;
  const std::uint16_t port = free_port();
  ReplicaSockets group(io, ListenAddress{"127.0.0.1", port, "127.0.0.1:" + std::to_string(port)});
  std::string error;
  for (std::uint64_t owner : {1, 2, 3, 4}) {
    const int fd = group.open(owner, &error);
    REQUIRE(fd >= 0);
    const int flags = 1;
    CHECK(ioctl(fd, FIONBIO, &flags) == 0);
  }
  CHECK(group.open(2, &error) == group.find(2));  // once per owner

  REQUIRE(group.steer({4}, &error));
  CHECK(land(group, 12) == std::map<std::uint64_t, int>{{4, 12}});
  REQUIRE(group.steer({2, 4}, &error));
  const auto both = land(group, 40);
  CHECK(both.size() == 2);
  CHECK(both.count(2) == 1);
  CHECK(both.count(4) == 1);

  // Closing 1 moves 4 (the last) into index 0: 4 still gets them, 1's socket is gone.
  CHECK(group.close(1) == 0);
  CHECK(group.sockets().front().replica == 4);
  REQUIRE(group.steer({4}, &error));
  CHECK(land(group, 12) == std::map<std::uint64_t, int>{{4, 12}});

  // A socket closed with a queue reports it (the kernel resets those connections).
  REQUIRE(group.steer({3}, &error));
  std::vector<int> waiting{connect_to(port), connect_to(port)};
  CHECK(group.close(3) == 2);
  for (int fd : waiting) close(fd);
  REQUIRE(group.steer({2}, &error));
  CHECK(land(group, 6) == std::map<std::uint64_t, int>{{2, 6}});
}

TEST_CASE("ReplicaSockets: when_queue_empty fires once the queue is accepted") {
  boost::asio::io_context io;
  const std::uint16_t port = free_port();
  ReplicaSockets group(io, ListenAddress{"127.0.0.1", port, "127.0.0.1:" + std::to_string(port)});
  std::string error;
  const int fd = group.open(7, &error);
  REQUIRE(fd >= 0);
  const int client = connect_to(port);
  bool empty = false;
  group.when_queue_empty(7, [&] { empty = true; });
  io.run_for(std::chrono::milliseconds(50));
  CHECK_FALSE(empty);
  const int accepted = accept(fd, nullptr, nullptr);
  io.run_for(std::chrono::milliseconds(100));
  CHECK(empty);
  close(accepted);
  close(client);
}
