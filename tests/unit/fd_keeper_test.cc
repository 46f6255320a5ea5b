// The fd keeper's confirmed drop (FdKeeper::drop_now), against a real keeper process started
// from this binary (tests/unit/main.cc): once drop_now returns, the keeper holds no copy of the
// fd, so the supervisor's own close is the last one (a per-replica socket leaves its reuseport
// group at that close, where the steering model expects it).
#include "fd_keeper.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "temp_dir.h"

using namespace deployctl;

namespace {

// Whether process `pid` has an fd open on the socket with inode `inode`.
bool holds_socket(pid_t pid, ino_t inode) {
  const std::string wanted = "socket:[" + std::to_string(inode) + "]";
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code link_ec;
    if (std::filesystem::read_symlink(entry.path(), link_ec).string() == wanted) return true;
  }
  return false;
}

ino_t inode_of(int fd) {
  struct stat info {};
  REQUIRE(fstat(fd, &info) == 0);
  return info.st_ino;
}

std::unique_ptr<FdKeeper> start_keeper(const test::TempDir& dir) {
  std::string error;
  auto keeper = FdKeeper::start("/proc/self/exe", (dir.path / "keeper.sock").string(), &error);
  REQUIRE_MESSAGE(keeper, error);
  return keeper;
}

}  // namespace

TEST_CASE("FdKeeper::drop_now: once it returns, the keeper's copy is closed") {
  test::TempDir dir;
  auto keeper = start_keeper(dir);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const ino_t inode = inode_of(fd);
  const std::string name = "7 socket 127.0.0.1:1";
  REQUIRE(keeper->sync({{name, fd}}, {}));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!holds_socket(keeper->pid(), inode) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(holds_socket(keeper->pid(), inode));  // sync() sends asynchronously
  CHECK(keeper->drop_now(name));
  CHECK_FALSE(holds_socket(keeper->pid(), inode));  // at once: confirmed after the close
  CHECK(keeper->drop_now("8 socket never sent"));   // answered too
  CHECK(keeper->sync({}, {}));                      // still in step: nothing left to drop
  keeper->quit();
  close(fd);
}

TEST_CASE("FdKeeper::drop_now is bounded: a keeper that does not answer counts as gone") {
  test::TempDir dir;
  auto keeper = start_keeper(dir);
  REQUIRE(kill(keeper->pid(), SIGSTOP) == 0);
  const auto started = std::chrono::steady_clock::now();
  CHECK_FALSE(keeper->drop_now("7 socket 127.0.0.1:1"));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
  CHECK_FALSE(keeper->sync({}, {}));  // and stays gone
  kill(keeper->pid(), SIGKILL);
  waitpid(keeper->pid(), nullptr, 0);
}
