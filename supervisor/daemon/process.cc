#include "process.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "clone3.h"
#include "control_protocol.h"
#include "load.h"
#include "read_file.h"

extern char** environ;

namespace deployctl {
namespace {

// Read in the forked child: set before any spawn, on the one event-loop thread.
std::optional<rlimit> child_fd_limit;

struct ChildError {
  int stage;  // 0 exec, 1 chdir, 2 fd setup, 3 credentials, 4 memory cgroup, 5 tree cgroup
  int error;
};

// The child shares the parent's memory (CLONE_VM) and the parent sleeps until it has exec'd
// or exited (CLONE_VFORK): a failure is left here for the parent to read.
[[noreturn]] void child_fail(ChildError* report, int stage) {
  report->stage = stage;
  report->error = errno;
  _exit(127);
}

// Writes the decimal `value` into `out` (room for 24 bytes). Async-signal-safe.
void format_pid(char* out, pid_t value) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
}

// What the child reads; everything is built before the clone, the child only makes syscalls.
struct ChildArgs {
  const SpawnRequest* request;
  const char* path;
  char* const* argv;
  char* const* envp;
  char* listen_pid_slot;
  int dev_null;
  ChildError* report;  // where the child leaves a failure; stage -1: none (it exec'd)
  const std::string* born_in = nullptr;  // the cgroup.procs of the cgroup clone3 created it in
};

// Runs in the cloned child, on its own stack, in the parent's memory while the parent waits:
// only raw syscalls and async-signal-safe calls, nothing that allocates or takes a lock. Every
// signal is blocked on entry (the parent blocked them before the clone); handlers are reset to
// the default before they are unblocked, so no handler of the parent ever runs here.
[[noreturn]] void exec_child(ChildArgs& args) {
  const SpawnRequest& request = *args.request;
  ChildError* report = args.report;
  const int dev_null = args.dev_null;
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    sigaction(sig, &action, nullptr);  // fails harmlessly for SIGKILL, SIGSTOP and glibc's own
  }
  setpgid(0, 0);
  // Before anything of the replica's own can run.
  for (const std::string* file : {&request.cgroup_procs, &request.tree_cgroup_procs}) {
    if (file->empty() || file == args.born_in) continue;
    int procs = open(file->c_str(), O_WRONLY | O_CLOEXEC);
    if (procs < 0 || write(procs, "0", 1) != 1) {
      child_fail(report, file == &request.cgroup_procs ? 4 : 5);
    }
    close(procs);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  // Move every source fd out of the target range first, then place each at its slot.
  const int count = static_cast<int>(request.inherit_fds.size());
  const int high = 3 + count + 3;
  auto lift = [&](int fd) {
    int moved = fcntl(fd < 0 ? dev_null : fd, F_DUPFD_CLOEXEC, high);
    if (moved < 0) child_fail(report, 2);
    return moved;
  };
  int in = lift(dev_null), out = lift(request.stdout_fd), err = lift(request.stderr_fd);
  int lifted[64];
  for (int i = 0; i < count && i < 64; ++i) lifted[i] = lift(request.inherit_fds[i]);
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) child_fail(report, 2);
  for (int i = 0; i < count && i < 64; ++i) {
    if (dup2(lifted[i], 3 + i) < 0) child_fail(report, 2);
  }
  // Close everything else.
  close_range(3 + count, ~0U, 0);

  if (const auto& credentials = request.credentials) {
    // Raw syscalls: glibc's wrappers would try to change the ids of every thread of the
    // supervisor, whose memory (and thread list) this child shares until it execs.
    if (syscall(SYS_setgroups, credentials->groups.size(), credentials->groups.data()) != 0 ||
        syscall(SYS_setresgid, credentials->gid, credentials->gid, credentials->gid) != 0 ||
        syscall(SYS_setresuid, credentials->uid, credentials->uid, credentials->uid) != 0) {
      child_fail(report, 3);
    }
  }
  if (!request.working_dir.empty() && chdir(request.working_dir.c_str()) != 0) {
    child_fail(report, 1);
  }
  if (args.listen_pid_slot) {
    format_pid(args.listen_pid_slot, static_cast<pid_t>(syscall(SYS_getpid)));
  }
  // Last: the fds above were placed with the supervisor's (raised) limit.
  if (child_fd_limit) setrlimit(RLIMIT_NOFILE, &*child_fd_limit);
  execve(args.path, args.argv, args.envp);
  child_fail(report, 0);
}

int child_entry(void* args) { exec_child(*static_cast<ChildArgs*>(args)); }

// Under the sanitizers the child must not share our memory: their interceptors (sigaction,
// ...) would update the runtime's state of the parent from the child (seen: LeakSanitizer's
// exit-time check of the supervisor and of replicas hanging). There the child gets a copy of
// our memory as with fork (still CLONE_VFORK: we sleep until it has exec'd) and leaves its
// failure in a shared page. Production builds share memory, like posix_spawn.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DEPLOYCTL_SPAWN_COPIES_MEMORY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define DEPLOYCTL_SPAWN_COPIES_MEMORY 1
#endif
#endif
#ifdef DEPLOYCTL_SPAWN_COPIES_MEMORY
constexpr int kCloneFlags = CLONE_VFORK | SIGCHLD;
constexpr bool kMaySpawnIntoCgroup = false;  // clone3's entry is for CLONE_VM children only
ChildError* failure_report(ChildError*) {
  static auto* shared = static_cast<ChildError*>(mmap(nullptr, sizeof(ChildError),
                                                      PROT_READ | PROT_WRITE,
                                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  return shared;  // MAP_FAILED is checked by the caller
}
#else
constexpr int kCloneFlags = CLONE_VM | CLONE_VFORK | SIGCHLD;
constexpr bool kMaySpawnIntoCgroup = true;
ChildError* failure_report(ChildError* local) { return local; }
#endif

}  // namespace

bool spawn_into_cgroup_built() { return kMaySpawnIntoCgroup && clone3_vm_available(); }

namespace {

// The child's stack: it runs only while the parent sleeps (CLONE_VFORK), one child at a time
// (the event loop is single-threaded), so one static stack serves every spawn.
alignas(64) char child_stack[64 * 1024];

// Set once clone3 said it cannot create a child in a cgroup on this kernel (ENOSYS, E2BIG,
// EINVAL): every later spawn goes straight to clone() and the child's own cgroup.procs write.
bool no_clone_into_cgroup = false;

// For CLONE_INTO_CGROUP: the directory of the first of the request's cgroup.procs files that is
// on cgroup v2 (opened O_PATH), and that file in *procs; -1 when none is (cgroup v1, a test
// tree of plain files), clone3 cannot do it here, or DEPLOYCTL_CLONE_INTO_CGROUP=off (to
// measure or test the fallback).
int open_cgroup2_dir(const SpawnRequest& request, const std::string** procs) {
  if (!kMaySpawnIntoCgroup || no_clone_into_cgroup || !clone3_vm_available()) return -1;
  const char* knob = std::getenv("DEPLOYCTL_CLONE_INTO_CGROUP");
  if (knob && std::strcmp(knob, "off") == 0) return -1;
  for (const std::string* file : {&request.cgroup_procs, &request.tree_cgroup_procs}) {
    const std::size_t slash = file->rfind('/');
    if (slash == std::string::npos || slash == 0) continue;
    const std::string dir = file->substr(0, slash);
    const int fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct statfs fs;
    if (fd >= 0 && fstatfs(fd, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
      *procs = file;
      return fd;
    }
    if (fd >= 0) close(fd);
  }
  return -1;
}

// Creates the child (see spawn_process) and returns its pid, or -1 with errno. Born in the
// cgroup of `args.born_in` when clone3 can do it (`cgroup_fd` >= 0); after any failure of that
// (the cgroup gone or not usable, an old kernel) the child is created by clone() and moves into
// its cgroups itself, which also reports the error of a cgroup that cannot be joined.
pid_t clone_child(ChildArgs& args, int cgroup_fd) {
  if (cgroup_fd >= 0) {
    const long pid =
        clone3_vm_into_cgroup(cgroup_fd, child_stack, sizeof child_stack, child_entry, &args);
    if (pid > 0) return static_cast<pid_t>(pid);
    if (pid == -ENOSYS || pid == -E2BIG || pid == -EINVAL) no_clone_into_cgroup = true;
    args.born_in = nullptr;
    *args.report = ChildError{-1, 0};
  }
  return clone(child_entry, child_stack + sizeof child_stack, kCloneFlags, &args);
}

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

bool is_executable_file(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// execve's ENOENT for a file that exists means its interpreter is missing: the `#!` line's
// program, or an ELF binary's dynamic loader. Says which; "" if `path` itself is missing.
std::string missing_interpreter(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return "";
  char head[256] = {};
  ssize_t n = -1;
  if (int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY); fd >= 0) {
    n = read(fd, head, sizeof head);
    close(fd);
  }
  std::string first_line(head, n > 0 ? static_cast<std::size_t>(n) : 0);
  first_line = first_line.substr(0, first_line.find('\n'));
  if (first_line.rfind("#!", 0) == 0) {
    std::size_t start = first_line.find_first_not_of(" \t", 2);
    if (start != std::string::npos) {
      std::size_t end = first_line.find_first_of(" \t\r", start);
      return "interpreter '" + first_line.substr(start, end - start) + "' of '" + path +
             "' not found (its #! line)";
    }
  }
  return "cannot execute '" + path + "': it exists, but its interpreter (for a binary: the "
         "dynamic loader it was linked for) was not found";
}

}  // namespace

void set_child_fd_limit(std::uint64_t soft) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  limit.rlim_cur = soft;
  child_fd_limit = limit;
}

std::optional<std::uint64_t> child_fd_limit_soft() {
  if (!child_fd_limit) return std::nullopt;
  return child_fd_limit->rlim_cur;
}

std::string resolve_command(const std::string& name, const std::string& path_env) {
  if (name.find('/') != std::string::npos) return name;
  std::string first_existing;
  std::stringstream dirs(path_env + ":" + self_dir());
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    if (first_existing.empty() && access(candidate.c_str(), F_OK) == 0) first_existing = candidate;
  }
  // Not found: return something execve fails on with the right errno (EACCES or ENOENT).
  return first_existing.empty() ? name : first_existing;
}

SpawnResult spawn_process(const SpawnRequest& request) {
  SpawnResult result;
  if (request.argv.empty() || request.inherit_fds.size() > 64) {
    result.error = EINVAL;
    result.message = "invalid spawn request";
    return result;
  }
  // Everything the child needs is built before fork: the child only makes syscalls.
  std::vector<std::string> env = request.env;
  if (request.set_listen_pid) env.push_back("LISTEN_PID=" + std::string(24, '\0'));
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  char* listen_pid_slot = request.set_listen_pid ? env.back().data() + 11 : nullptr;
  std::vector<std::string> args = request.argv;
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string path = args[0];

  int dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);
  ChildError local_report{-1, 0};
  ChildError* report = failure_report(&local_report);
  if (report == MAP_FAILED) report = &local_report;  // a failure then reads as an early exit
  *report = ChildError{-1, 0};
  ChildArgs child{&request, path.c_str(), argv.data(), envp.data(), listen_pid_slot, dev_null,
                  report};
  const int cgroup_fd = open_cgroup2_dir(request, &child.born_in);
  // Like posix_spawn: the child runs in our memory while we sleep until it has exec'd (or
  // failed), so there is no page-table copy and no pipe to read: when clone returns, the
  // child's fate is known. Signals stay blocked across it (see exec_child).
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pid_t pid = clone_child(child, cgroup_fd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (dev_null >= 0) close(dev_null);
  if (cgroup_fd >= 0) close(cgroup_fd);
  if (pid < 0) {
    result.error = clone_errno;
    result.message = std::string("fork: ") + std::strerror(clone_errno);
    return result;
  }
  setpgid(pid, pid);  // also from the parent, so the group exists before we ever signal it

  const ChildError failure = *report;
  if (failure.stage < 0) {
    result.pid = pid;
    result.born_in_cgroup = child.born_in != nullptr;
    return result;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.error = failure.error;
  const char* what = failure.stage == 0   ? "cannot execute '"
                     : failure.stage == 1 ? "cannot enter working_dir '"
                     : failure.stage == 3 ? "cannot switch user to run '"
                     : failure.stage == 4 ? "cannot join the memory cgroup '"
                     : failure.stage == 5 ? "cannot join the replica's cgroup '"
                                          : "cannot set up fds for '";
  const std::string& subject = failure.stage == 1   ? request.working_dir
                               : failure.stage == 4 ? request.cgroup_procs
                               : failure.stage == 5 ? request.tree_cgroup_procs
                                                    : request.argv[0];
  result.message = what + subject + "': " + std::strerror(failure.error);
  if (failure.stage == 0 && failure.error == ENOENT) {
    const bool relative = path[0] != '/' && !request.working_dir.empty();
    const std::string seen_by_child = relative ? request.working_dir + "/" + path : path;
    if (std::string missing = missing_interpreter(seen_by_child); !missing.empty()) {
      result.message = missing;
    }
  }
  return result;
}

std::optional<SpawnRequest::Credentials> lookup_credentials(const std::string& user,
                                                            const std::string& group,
                                                            std::string* error) {
  passwd* account = user.empty() ? getpwuid(geteuid()) : getpwnam(user.c_str());
  if (!account) {
    *error = "no such user '" + user + "'";
    return std::nullopt;
  }
  SpawnRequest::Credentials credentials{account->pw_uid, account->pw_gid, {}};
  if (!group.empty()) {
    struct group* entry = getgrnam(group.c_str());
    if (!entry) {
      *error = "no such group '" + group + "'";
      return std::nullopt;
    }
    credentials.gid = entry->gr_gid;
  }
  int count = 64;
  credentials.groups.resize(count);
  if (getgrouplist(account->pw_name, credentials.gid, credentials.groups.data(), &count) < 0) {
    credentials.groups.resize(count);
    getgrouplist(account->pw_name, credentials.gid, credentials.groups.data(), &count);
  }
  credentials.groups.resize(count);
  return credentials;
}

std::vector<std::string> inherited_environment() {
  static const std::set<std::string> not_inherited = {
      "NOTIFY_SOCKET", "LISTEN_FDS",   "LISTEN_PID",          "LISTEN_FDNAMES",
      "WATCHDOG_USEC", "WATCHDOG_PID", control::kControlFdEnv, control::kServiceEnv,
      control::kReplicaEnv};
  std::vector<std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    std::string text(*entry);
    if (!not_inherited.count(text.substr(0, text.find('=')))) env.push_back(std::move(text));
  }
  return env;
}

void set_variable(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  auto same_key = [&key](const std::string& entry) {
    return entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
           entry[key.size()] == '=';
  };
  auto it = std::find_if(env.begin(), env.end(), same_key);
  if (it != env.end()) {
    *it = key + "=" + value;
  } else {
    env.push_back(key + "=" + value);
  }
}

std::string path_variable(const std::vector<std::string>& env) {
  for (const auto& entry : env) {
    if (entry.rfind("PATH=", 0) == 0) return entry.substr(5);
  }
  return {};
}

void signal_group(pid_t pgid, int signal) {
  if (pgid > 0) kill(-pgid, signal);
}

std::optional<unsigned long long> resident_bytes(pid_t pid) {
  std::istringstream statm(
      read_file("/proc/" + std::to_string(pid) + "/statm", kMaxKernelBytes).text);
  unsigned long long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return resident * static_cast<unsigned long long>(sysconf(_SC_PAGESIZE));
}

std::vector<pid_t> child_pids(pid_t parent) {
  std::vector<pid_t> children;
  const std::string tasks = "/proc/" + std::to_string(parent) + "/task";
  DIR* dir = opendir(tasks.c_str());
  if (!dir) return children;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::istringstream file(
        read_file(tasks + "/" + entry->d_name + "/children", kMaxKernelBytes).text);
    long child;
    while (file >> child) children.push_back(static_cast<pid_t>(child));
  }
  closedir(dir);
  return children;
}

std::vector<pid_t> child_pids() { return child_pids(getpid()); }

}  // namespace deployctl
