// The decision parts of "a cgroup per replica" (tree_cgroup.h): the path scheme and where the
// deployment's cgroup goes, against fake trees in temp dirs; the kill of a whole tree on the
// host's real cgroup v2 hierarchy, and a replica born in its cgroup (clone3) or moved there (the
// fallback), when it is writable (as root), else skipped by doctest.
#include "tree_cgroup.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "clone3.h"
#include "process.h"
#include "temp_dir.h"

using namespace deployctl;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

// The host's own v2 cgroup as the supervisor would pick it, if it is writable here.
std::optional<std::string> host_parent() {
  CgroupHost host = host_from_environment();
  host.own_dir.reset();
  std::string why;
  return tree_cgroup_parent(host, &why);
}

bool no_writable_cgroup2() { return !host_parent(); }

}  // namespace

TEST_CASE("tree cgroup: the deployment's cgroup name is stable and unique per state dir") {
  const std::string a = deployment_cgroup_name("shop", "/run/deployctl/shop");
  CHECK(a == deployment_cgroup_name("shop", "/run/deployctl/shop"));  // again after an exec
  CHECK(a.rfind("deployctl-shop-", 0) == 0);
  CHECK(a.size() == std::string("deployctl-shop-").size() + 8);
  CHECK(a != deployment_cgroup_name("shop", "/tmp/dctl-x/run/shop"));  // same name elsewhere
  CHECK(a != deployment_cgroup_name("shop2", "/run/deployctl/shop"));
}

TEST_CASE("tree cgroup: the parent is the supervisor's own v2 cgroup, if writable") {
  TempDir tree;
  CgroupHost host;
  std::string why;

  SUBCASE("a given dir that is writable") {
    host.own_dir = tree.path.string();
    CHECK(tree_cgroup_parent(host, &why) == tree.path.string());
  }
  SUBCASE("no v2 line in /proc/self/cgroup") {
    host.proc_self_cgroup = "4:memory:/x\n";
    CHECK_FALSE(tree_cgroup_parent(host, &why));
    CHECK(why.find("no cgroup v2 entry") != std::string::npos);
  }
  SUBCASE("a v2 path that is not on a cgroup2 file system (an empty hybrid mount)") {
    host.proc_self_cgroup = "0::/\n";
    host.v2_mount = tree.path.string();
    CHECK_FALSE(tree_cgroup_parent(host, &why));
    CHECK(why.find("not on a cgroup v2 file system") != std::string::npos);
  }
  SUBCASE("a given dir that does not exist") {
    host.own_dir = (tree.path / "missing").string();
    CHECK_FALSE(tree_cgroup_parent(host, &why));
    CHECK(why.find("not writable") != std::string::npos);
  }
}

TEST_CASE("tree cgroup: replica cgroups go below the deployment's, found again by id") {
  TempDir tree;
  TreeCgroups cgroups;
  std::string why;
  REQUIRE(cgroups.open(tree.path.string(), "deployctl-shop-0000abcd", &why));
  CHECK(cgroups.enabled());
  CHECK(cgroups.path_of("web.0") == (tree.path / "deployctl-shop-0000abcd/web.0").string());
  CHECK_FALSE(cgroups.find("web.0"));

  auto cgroup = cgroups.prepare("web.0", &why);
  REQUIRE(cgroup);
  CHECK(cgroup->path() == cgroups.path_of("web.0"));
  CHECK(cgroups.find("web.0"));  // what a new binary does after the exec

  CHECK(cgroup->remove());
  cgroups.close();
  CHECK_FALSE(cgroups.enabled());
  CHECK_FALSE(fs::exists(tree.path / "deployctl-shop-0000abcd"));
}

TEST_CASE("tree cgroup: opening fails clearly where the parent cannot take a cgroup") {
  TempDir tree;
  TreeCgroups cgroups;
  std::string why;
  CHECK_FALSE(cgroups.open((tree.path / "missing").string(), "deployctl-x-00000000", &why));
  CHECK(why.find("cannot create") != std::string::npos);
  CHECK_FALSE(cgroups.enabled());
}

TEST_CASE("tree cgroup: a restart's prepare kills what the last run left, setsid or not" *
          doctest::skip(no_writable_cgroup2())) {
  TreeCgroups cgroups;
  std::string why;
  const std::string name = "deployctl-unit-test-" + std::to_string(getpid());
  REQUIRE(cgroups.open(*host_parent(), name, &why));
  auto first = cgroups.prepare("web.0", &why);
  REQUIRE(first);

  // A replica that double-forks a detached sleep, then exits.
  SpawnRequest request;
  request.argv = {"/bin/sh", "-c", "setsid /bin/sleep 600 & exit 0"};
  request.env = {"PATH=/usr/bin:/bin"};
  request.tree_cgroup_procs = first->procs_file();
  SpawnResult spawned = spawn_process(request);
  REQUIRE(spawned.pid > 0);
  int status;
  waitpid(spawned.pid, &status, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (first->members().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto left = first->members();
  REQUIRE(left.size() == 1);  // the detached sleep, in the replica's cgroup

  auto second = cgroups.prepare("web.0", &why);  // the restart: SIGKILLs what is left
  REQUIRE(second);
  // prepare waits at most 100 ms for the killed tree to be gone; under load the kernel may
  // take longer to run a killed process's exit, so the test waits (bounded) for it.
  const auto gone_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!second->members().empty() && std::chrono::steady_clock::now() < gone_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(second->members().empty());
  CHECK(second->remove());
  cgroups.close();
}

namespace {

// Spawns `script` under sh in `procs`'s cgroup with stdout captured; waits for its exit.
std::pair<SpawnResult, std::string> run_in_cgroup(const std::string& procs,
                                                  const std::string& script) {
  int out[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  SpawnRequest request;
  request.argv = {"/bin/sh", "-c", script};
  request.env = {"PATH=/usr/bin:/bin"};
  request.stdout_fd = out[1];
  request.tree_cgroup_procs = procs;
  SpawnResult result = spawn_process(request);
  close(out[1]);
  std::string output;
  char buffer[4096];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof buffer)) > 0) output.append(buffer, n);
  close(out[0]);
  if (result.pid > 0) waitpid(result.pid, nullptr, 0);
  return {result, output};
}

// Whether clone3 can create a child in its cgroup here: an x86-64 build, Linux >= 5.7.
bool clone_into_cgroup_expected() {
  utsname host{};
  int major = 0, minor = 0;
  return spawn_into_cgroup_built() && uname(&host) == 0 &&
         std::sscanf(host.release, "%d.%d", &major, &minor) == 2 &&
         (major > 5 || (major == 5 && minor >= 7));
}

// The v2 line ("0::/path") of a /proc/PID/cgroup text.
std::string v2_line(const std::string& text) {
  const auto start = text.find("0::");
  return start == std::string::npos ? "" : text.substr(start, text.find('\n', start) - start);
}

}  // namespace

TEST_CASE("tree cgroup: a replica is born in its cgroup (clone3), or moves there when it cannot" *
          doctest::skip(no_writable_cgroup2())) {
  TreeCgroups cgroups;
  std::string why;
  const std::string name = "deployctl-unit-test-" + std::to_string(getpid());
  REQUIRE(cgroups.open(*host_parent(), name, &why));
  auto cgroup = cgroups.prepare("web.0", &why);
  REQUIRE(cgroup);
  const std::string expected = "/" + name + "/web.0";

  SUBCASE("born there: no migration (where the kernel has CLONE_INTO_CGROUP)") {
    // The shell's first act is reading its own cgroup.
    // Named members, not a structured binding: clang (the sanitizer build) cannot capture
    // one in the lambda REQUIRE_MESSAGE expands to.
    const auto ran = run_in_cgroup(cgroup->procs_file(), "cat /proc/self/cgroup");
    const SpawnResult& result = ran.first;
    const std::string& output = ran.second;
    REQUIRE_MESSAGE(result.pid > 0, result.message);
    CHECK(result.born_in_cgroup == clone_into_cgroup_expected());
    CHECK(v2_line(output).ends_with(expected));
  }
  SUBCASE("DEPLOYCTL_CLONE_INTO_CGROUP=off: the clone() fallback moves the child before exec") {
    setenv("DEPLOYCTL_CLONE_INTO_CGROUP", "off", 1);
    // Named members, not a structured binding: clang (the sanitizer build) cannot capture
    // one in the lambda REQUIRE_MESSAGE expands to.
    const auto ran = run_in_cgroup(cgroup->procs_file(), "cat /proc/self/cgroup");
    const SpawnResult& result = ran.first;
    const std::string& output = ran.second;
    unsetenv("DEPLOYCTL_CLONE_INTO_CGROUP");
    REQUIRE_MESSAGE(result.pid > 0, result.message);
    CHECK_FALSE(result.born_in_cgroup);
    CHECK(v2_line(output).ends_with(expected));
  }
  SUBCASE("a cgroup that cannot take processes: clone3 refuses, the fallback says why") {
    // A sibling of a threaded cgroup is "domain invalid": no process may enter it.
    const fs::path parent = cgroup->path();
    REQUIRE(mkdir((parent / "threads").c_str(), 0755) == 0);
    std::ofstream(parent / "threads" / "cgroup.type") << "threaded";
    REQUIRE(mkdir((parent / "invalid").c_str(), 0755) == 0);
    const std::string procs = (parent / "invalid" / "cgroup.procs").string();
    auto [result, output] = run_in_cgroup(procs, "exit 0");
    CHECK(result.pid < 0);
    CHECK(result.message ==
          "cannot join the replica's cgroup '" + procs + "': " + std::strerror(result.error));
    CHECK(result.error == EOPNOTSUPP);
    rmdir((parent / "invalid").c_str());
    rmdir((parent / "threads").c_str());
  }
  CHECK(cgroup->remove());
  cgroups.close();
}
