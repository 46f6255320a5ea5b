// The clone3 entry (clone3.h). This file includes the kernel's <linux/sched.h> (struct
// clone_args, CLONE_INTO_CGROUP) and not glibc's <sched.h>, whose CLONE_* macros clash with it.
#include "clone3.h"

#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdint>

namespace deployctl {

#if defined(__x86_64__) && defined(SYS_clone3)

// long deployctl_clone3_entry(clone_args* args, size_t size, int (*fn)(void*), void* arg)
//
// The raw clone3 system call. In the parent it returns the syscall's result (pid or -errno).
// The child wakes up from the same syscall, with the same registers but %rax = 0 and %rsp at the
// top of args->stack: it cannot return into the parent's C++ frames (they live on the parent's
// stack, which the child must not touch), so it calls fn(arg) on its new stack and passes fn's
// result to exit(2). The syscall instruction clobbers only %rcx and %r11, so fn (%rdx) survives
// it and arg is kept in %r8. The kernel leaves the new %rsp 16-byte aligned (the caller's
// contract), which is what the `call` needs. `.cfi_undefined rip` ends unwinding in the child
// (debuggers, profilers): it has no caller.
asm(R"(
    .text
    .p2align 4
    .globl deployctl_clone3_entry
    .hidden deployctl_clone3_entry
    .type deployctl_clone3_entry, @function
deployctl_clone3_entry:
    .cfi_startproc
    movq %rcx, %r8
    movl $435, %eax
    syscall
    testq %rax, %rax
    jz 1f
    ret
1:
    .cfi_undefined rip
    xorl %ebp, %ebp
    movq %r8, %rdi
    call *%rdx
    movl %eax, %edi
    movl $60, %eax
    syscall
    hlt
    .cfi_endproc
    .size deployctl_clone3_entry, .-deployctl_clone3_entry
)");
static_assert(SYS_clone3 == 435 && SYS_exit == 60, "x86-64 syscall numbers in the entry above");

extern "C" long deployctl_clone3_entry(clone_args* args, std::size_t size, int (*fn)(void*),
                                       void* arg);

bool clone3_vm_available() { return true; }

long clone3_vm_into_cgroup(int cgroup_fd, char* stack, std::size_t stack_size, int (*fn)(void*),
                           void* arg) {
  clone_args args{};
  args.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<std::uintptr_t>(stack);
  args.stack_size = stack_size;
  args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
  return deployctl_clone3_entry(&args, sizeof args, fn, arg);
}

#else

bool clone3_vm_available() { return false; }

long clone3_vm_into_cgroup(int, char*, std::size_t, int (*)(void*), void*) { return -ENOSYS; }

#endif

}  // namespace deployctl
