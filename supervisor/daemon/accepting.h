// Whether a replica takes connections from a listening socket it shares with other replicas
// (edge: reads /proc, Linux). A probe of a shared socket may be answered by any replica, so a
// new replica's first passing probe says nothing about the replica itself; this does.
#pragma once

#include <sys/types.h>

#include <string_view>

namespace deployctl {

// Pure: whether `fdinfo` (the text of /proc/PID/fdinfo/N of an eventpoll fd) has a watch on the
// file with inode `inode` (a "tfd: ... ino:HEX ..." line).
bool epoll_watches(std::string_view fdinfo, ino_t inode);

// Pure: whether a thread sleeping in `wchan` (/proc/PID/task/TID/wchan) may be waiting for a
// connection: in accept(), or in select()/poll(), whose fd sets /proc does not show.
bool may_wait_for_connection(std::string_view wchan);

// Whether a process of the tree rooted at `root` watches the socket of `socket_fd` (an fd of
// this process) with epoll, or has a thread in accept(), or is childless with a thread in
// select()/poll(). True when `root`'s fds cannot be read (then nothing is known beyond the
// probe); false once `root` is gone.
bool tree_accepts_on(pid_t root, int socket_fd);

}  // namespace deployctl
