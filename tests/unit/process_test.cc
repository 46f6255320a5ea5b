// The process edge, tested with real processes (no mocks): exec failures, fd layout,
// process groups, environment.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "process.h"

using namespace deployctl;

namespace {

// Runs `script` under sh with stdout captured; returns {exit code, output}.
std::pair<int, std::string> run_sh(const std::string& script, SpawnRequest request = {}) {
  int out[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  request.argv = {resolve_command("sh", std::getenv("PATH")), "-c", script};
  request.stdout_fd = out[1];
  SpawnResult result = spawn_process(request);
  close(out[1]);
  REQUIRE_MESSAGE(result.pid > 0, result.message);
  std::string output;
  char buffer[4096];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof buffer)) > 0) output.append(buffer, n);
  close(out[0]);
  int status = 0;
  REQUIRE(waitpid(result.pid, &status, 0) == result.pid);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("process: exit code and stdout of a real child") {
  auto [code, output] = run_sh("echo hello; exit 3");
  CHECK(code == 3);
  CHECK(output == "hello\n");
}

TEST_CASE("process: a missing binary is an exec failure, known before spawn returns") {
  SpawnRequest request;
  request.argv = {"/nonexistent/deployctl-test-binary"};
  SpawnResult result = spawn_process(request);
  CHECK(result.pid < 0);
  CHECK(result.error == ENOENT);
  CHECK(result.message ==
        "cannot execute '/nonexistent/deployctl-test-binary': No such file or directory");
}

TEST_CASE("process: a script whose #! interpreter is missing is reported as such") {
  char path[] = "/tmp/deployctl-process-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string script = "#!/nonexistent/deployctl-interpreter -u\necho never\n";
  REQUIRE(write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size()));
  close(fd);
  chmod(path, 0755);
  SpawnRequest request;
  request.argv = {path};
  SpawnResult result = spawn_process(request);
  unlink(path);
  CHECK(result.pid < 0);
  CHECK(result.error == ENOENT);
  CHECK(result.message == "interpreter '/nonexistent/deployctl-interpreter' of '" +
                              std::string(path) + "' not found (its #! line)");
}

TEST_CASE("process: a file without execute permission is reported as such") {
  char path[] = "/tmp/deployctl-process-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  chmod(path, 0644);
  SpawnRequest request;
  request.argv = {path};
  SpawnResult result = spawn_process(request);
  unlink(path);
  CHECK(result.pid < 0);
  CHECK(result.error == EACCES);
  CHECK(result.message.find("Permission denied") != std::string::npos);
}

TEST_CASE("process: a bad working directory is reported with the directory") {
  SpawnRequest request;
  request.argv = {"/bin/true"};
  request.working_dir = "/nonexistent-dir";
  SpawnResult result = spawn_process(request);
  CHECK(result.pid < 0);
  CHECK(result.message == "cannot enter working_dir '/nonexistent-dir': No such file or directory");
}

TEST_CASE("process: inherited fds land at 3, 4, ... and nothing else leaks") {
  int a[2], b[2];
  REQUIRE(pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(pipe2(b, O_CLOEXEC) == 0);
  int stray = open("/dev/null", O_RDONLY);  // not close-on-exec: must still not leak
  SpawnRequest request;
  request.argv = {"/bin/sleep", "5"};
  request.inherit_fds = {b[1], a[1]};  // reversed on purpose: order is what counts
  request.set_listen_pid = true;
  request.env = {"A=1"};
  SpawnResult result = spawn_process(request);
  REQUIRE(result.pid > 0);
  close(stray);
  // spawn_process returns after the exec: the child's fd table is what the program got.
  const std::string proc = "/proc/" + std::to_string(result.pid);
  std::set<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd")) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  CHECK(fds == std::set<int>{0, 1, 2, 3, 4});
  auto same_pipe = [&](int child_fd, int our_fd) {
    struct stat theirs, ours;
    REQUIRE(stat((proc + "/fd/" + std::to_string(child_fd)).c_str(), &theirs) == 0);
    REQUIRE(fstat(our_fd, &ours) == 0);
    return theirs.st_ino == ours.st_ino;
  };
  CHECK(same_pipe(3, b[1]));
  CHECK(same_pipe(4, a[1]));
  // spawn_process returns once the exec is committed (CLONE_VFORK); the kernel sets up the new
  // program's environment block a few microseconds later: wait for it, bounded.
  std::string environ_text;
  for (int tries = 0; tries < 1000 && environ_text.empty(); ++tries) {
    std::ifstream environ_file(proc + "/environ");
    environ_text.assign(std::istreambuf_iterator<char>(environ_file), {});
    if (environ_text.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(environ_text == "A=1" + std::string(1, '\0') + "LISTEN_PID=" +
                            std::to_string(result.pid) + std::string(1, '\0'));
  signal_group(result.pid, SIGKILL);
  int status = 0;
  waitpid(result.pid, &status, 0);
  for (int fd : {a[0], a[1], b[0], b[1]}) close(fd);
}

TEST_CASE("process: the child leads its own process group and gets only the given env") {
  int out[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  SpawnRequest request;
  request.argv = {"/bin/sh", "-c", "echo \"$ONLY_THIS\"; sleep 5"};
  request.env = {"ONLY_THIS=yes"};
  request.stdout_fd = out[1];
  SpawnResult result = spawn_process(request);
  close(out[1]);
  REQUIRE(result.pid > 0);
  CHECK(getpgid(result.pid) == result.pid);
  char buffer[16] = {};
  CHECK(read(out[0], buffer, sizeof buffer - 1) == 4);
  CHECK(std::string(buffer) == "yes\n");
  close(out[0]);
  signal_group(result.pid, SIGKILL);
  int status = 0;
  REQUIRE(waitpid(result.pid, &status, 0) == result.pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

TEST_CASE("process: resolve_command searches PATH and keeps paths with a slash") {
  CHECK(resolve_command("./relative/tool", "/usr/bin") == "./relative/tool");
  std::string sh = resolve_command("sh", "/nonexistent:/usr/bin:/bin");
  CHECK((sh == "/usr/bin/sh" || sh == "/bin/sh"));
  CHECK(resolve_command("no-such-tool-deployctl", "/usr/bin") == "no-such-tool-deployctl");
}
