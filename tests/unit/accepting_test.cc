// Whether a replica accepts on a shared socket: the /proc parsers on texts as the kernel writes
// them, and tree_accepts_on for real on this process and a child that sleeps.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "accepting.h"

using namespace deployctl;

namespace {

// A listening TCP socket on 127.0.0.1, any port.
int listening_socket() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(listen(fd, 8) == 0);
  return fd;
}

}  // namespace

TEST_CASE("epoll_watches finds the socket's inode among an eventpoll fd's watches") {
  const std::string fdinfo =
      "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n"
      "tfd:       11 events:       19 data:                b  pos:0 ino:1a3680 sdev:9\n"
      "tfd:       13 events:       19 data:                d  pos:0 ino:1a367d sdev:9\n";
  CHECK(epoll_watches(fdinfo, 0x1a367d));
  CHECK(epoll_watches(fdinfo, 0x1a3680));
  CHECK_FALSE(epoll_watches(fdinfo, 0x1038));  // the epoll fd's own inode is not a watch
  CHECK_FALSE(epoll_watches(fdinfo, 0x1a367));
  CHECK_FALSE(epoll_watches("", 1));
  CHECK_FALSE(epoll_watches("tfd: 3 events: 19 ino:zz sdev:9\n", 0));
}

TEST_CASE("may_wait_for_connection: accept, select and poll; not epoll or sleep") {
  CHECK(may_wait_for_connection("inet_csk_accept"));
  CHECK(may_wait_for_connection("do_select\n"));
  CHECK(may_wait_for_connection("do_sys_poll"));
  CHECK_FALSE(may_wait_for_connection("do_epoll_wait"));
  CHECK_FALSE(may_wait_for_connection("hrtimer_nanosleep"));
  CHECK_FALSE(may_wait_for_connection("0"));
  CHECK_FALSE(may_wait_for_connection(""));
}

TEST_CASE("tree_accepts_on: a process is seen once its epoll set watches the socket") {
  const int listener = listening_socket();
  const int other = listening_socket();
  const int epoll = epoll_create1(EPOLL_CLOEXEC);
  epoll_event event{};
  event.events = EPOLLIN;
  REQUIRE(epoll_ctl(epoll, EPOLL_CTL_ADD, other, &event) == 0);
  CHECK_FALSE(tree_accepts_on(getpid(), listener));
  REQUIRE(epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event) == 0);
  CHECK(tree_accepts_on(getpid(), listener));
  close(epoll);
  close(other);
  close(listener);
}

TEST_CASE("tree_accepts_on: a child blocked in accept() counts; a gone process does not") {
  const int listener = listening_socket();
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    accept(listener, nullptr, nullptr);
    _exit(0);
  }
  bool seen = false;
  for (int attempt = 0; attempt < 200 && !seen; ++attempt) {  // until it sleeps in accept()
    seen = tree_accepts_on(child, listener);
    if (!seen) usleep(10'000);
  }
  CHECK(seen);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  CHECK_FALSE(tree_accepts_on(child, listener));
  close(listener);
}
