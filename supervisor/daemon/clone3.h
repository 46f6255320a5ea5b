// clone3(2) for spawn_process (edge): a child created directly inside its cgroup v2
// (CLONE_INTO_CGROUP), so it never has to move there before its exec. A move (writing
// cgroup.procs) takes the kernel's cgroup_threadgroup_rwsem and cost ~0.26 ms per spawn; being
// born in the cgroup costs nothing extra. glibc 2.36 has no clone3 wrapper, and a CLONE_VM child
// must start on its own stack, so the entry is a few lines of assembly (clone3.cc). Only on
// x86-64; elsewhere clone3_vm_available() is false and spawn_process keeps its clone() path.
#pragma once

#include <cstddef>

namespace deployctl {

// Whether this build has the clone3 entry for a CLONE_VM child.
bool clone3_vm_available();

// Runs fn(arg) in a new process that shares this process's memory (CLONE_VM) and runs on
// [stack, stack + stack_size) (the top 16-byte aligned), born in the cgroup v2 directory
// `cgroup_fd` (an O_PATH or O_RDONLY fd of the directory). The caller sleeps until the child has
// exec'd or exited (CLONE_VFORK); the child exits with fn's return value, its parent gets
// SIGCHLD. Call with every signal blocked (the child inherits the mask; see spawn_process).
// Returns the child's pid, or -errno and no child: ENOSYS (no clone3: kernel < 5.3), E2BIG or
// EINVAL (no CLONE_INTO_CGROUP: kernel < 5.7), EBADF (not a cgroup v2 directory), EOPNOTSUPP or
// EBUSY (a cgroup that cannot hold processes), EACCES, EAGAIN, ENOMEM...
long clone3_vm_into_cgroup(int cgroup_fd, char* stack, std::size_t stack_size, int (*fn)(void*),
                           void* arg);

}  // namespace deployctl
