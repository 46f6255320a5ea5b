// read_file (config/read_file.h): every whole-file read goes through it, so it must refuse
// special files without blocking and stop at the cap, on real files of each kind.
#include "read_file.h"
#include "temp_dir.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>

using namespace deployctl;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

// read_file on another thread with a deadline, so a read that blocks fails the test instead of
// hanging it; `unblock` then releases the reader so the thread can be joined.
FileRead read_with_deadline(const std::string& path, std::size_t cap,
                            void (*unblock)(const char*)) {
  auto result = std::async(std::launch::async, [&] { return read_file(path, cap); });
  if (result.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    FAIL_CHECK("read_file blocked on " << path);
    unblock(path.c_str());
  }
  return result.get();
}

void open_for_writing(const char* fifo) { ::close(::open(fifo, O_WRONLY | O_NONBLOCK)); }
void nothing(const char*) {}

}  // namespace

TEST_CASE("read_file: a normal file, an empty file and a file exactly at the cap") {
  TempDir dir;
  std::ofstream(dir.path / "a") << "A=1\n";
  std::ofstream(dir.path / "empty");
  std::ofstream(dir.path / "cap") << std::string(100, 'x');
  FileRead a = read_file((dir.path / "a").string(), 100);
  CHECK(a.ok());
  CHECK(a.text == "A=1\n");
  FileRead empty = read_file((dir.path / "empty").string(), 100);
  CHECK(empty.ok());
  CHECK(empty.text.empty());
  CHECK(read_file((dir.path / "cap").string(), 100).text.size() == 100);
}

TEST_CASE("read_file: a file over the cap is an error naming the cap") {
  TempDir dir;
  std::ofstream(dir.path / "big") << std::string(101, 'x');
  FileRead big = read_file((dir.path / "big").string(), 100);
  CHECK_FALSE(big.ok());
  CHECK(big.text.empty());
  CHECK(big.error == "is larger than the limit of 100 bytes");
  std::ofstream(dir.path / "huge") << std::string((1 << 20) + 1, 'x');
  CHECK(read_file((dir.path / "huge").string(), 1 << 20).error ==
        "is larger than the limit of 1048576 bytes (1 MiB)");
}

TEST_CASE("read_file: /proc files report size 0 and are still read whole, up to the cap") {
  FileRead status = read_file("/proc/self/status", kMaxKernelBytes);
  CHECK(status.ok());
  CHECK(status.text.find("Pid:") != std::string::npos);
  CHECK(read_file("/proc/self/status", 10).error == "is larger than the limit of 10 bytes");
}

TEST_CASE("read_file: a FIFO with no writer is refused at once, without blocking") {
  TempDir dir;
  const std::string fifo = (dir.path / "fifo").string();
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  FileRead read = read_with_deadline(fifo, 100, open_for_writing);
  CHECK(read.error == "is a FIFO, not a regular file");
}

TEST_CASE("read_file: a directory, a device and a socket are refused") {
  TempDir dir;
  CHECK(read_with_deadline(dir.path.string(), 100, nothing).error ==
        "is a directory, not a regular file");
  // /dev/zero never ends: without the check this would fill memory up to the cap.
  CHECK(read_with_deadline("/dev/zero", 100, nothing).error ==
        "is a character device, not a regular file");
  const std::string socket_path = (dir.path / "sock").string();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  CHECK(read_file(socket_path, 100).error == "is a socket, not a regular file");
  ::close(fd);
}

TEST_CASE("read_file: a missing or unreadable file gives errno's text and number") {
  FileRead missing = read_file("/nonexistent/file", 100);
  CHECK(missing.error_number == ENOENT);
  CHECK(missing.error == std::strerror(ENOENT));
}
