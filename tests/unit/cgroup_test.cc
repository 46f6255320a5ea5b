// The cgroup edge. Detection and the v2 layout run against fake trees in temp dirs (this host
// has no writable cgroup v2; the fake tree stands in for a delegated one); joining a cgroup
// before exec and killing every member run for real on the host's cgroup v1 memory controller
// when it is writable (as root), and are reported as skipped by doctest when it is not.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cgroup.h"
#include "memory_sampling.h"
#include "process.h"
#include "temp_dir.h"

using namespace deployctl;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

void put(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }

std::string slurp(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The host's own v1 memory cgroup, as the supervisor would pick it, if it is writable here.
MemorySetup host_cgroup1() {
  CgroupHost host = host_from_environment();
  host.own_dir.reset();
  host.forced = MemoryMode::cgroup1;
  return detect_memory_mode(host);
}

// Evaluated when the test case is registered: doctest then counts the test as skipped.
bool no_writable_cgroup1() { return host_cgroup1().mode != MemoryMode::cgroup1; }

const char* kHybrid =
    "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpu,cpuacct:/x\n0::/user.slice/app\n";

}  // namespace

TEST_CASE("cgroup: own_cgroup_path finds the v2 line and a v1 controller") {
  CHECK(own_cgroup_path(kHybrid, "") == "/user.slice/app");
  CHECK(own_cgroup_path(kHybrid, "memory") == "/process_api/abc");
  CHECK(own_cgroup_path(kHybrid, "cpuacct") == "/x");
  CHECK_FALSE(own_cgroup_path("4:memory:/a\n", ""));
  CHECK_FALSE(own_cgroup_path("0::/a\n", "memory"));
}

TEST_CASE("cgroup: keyed_value reads memory.events, memory.oom_control and smaps_rollup") {
  CHECK(keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill") == 3u);
  CHECK(keyed_value("low 0\nhigh 2\nmax 7\noom 1\noom_kill 1\n", "max") == 7u);
  CHECK(keyed_value("55-77 ---p 0 [rollup]\nRss: 1796 kB\nPss: 187 kB\n", "Pss:") == 187u);
  CHECK_FALSE(keyed_value("under_oom 0\n", "oom_kill"));
}

TEST_CASE("cgroup: a delegated v2 tree (fake) is chosen and laid out as the v2 rules want") {
  TempDir root;
  put(root.path / "cgroup.controllers", "cpu io memory pids\n");
  put(root.path / "cgroup.subtree_control", "");
  CgroupHost host{"0::/\n", "/nonexistent", "/nonexistent", root.path.string(),
                  MemoryMode::cgroup2};
  MemorySetup setup = detect_memory_mode(host);
  REQUIRE(setup.mode == MemoryMode::cgroup2);
  CHECK(setup.dir == root.path.string());

  std::string error;
  REQUIRE_MESSAGE(prepare_cgroup2(setup.dir, &error), error);
  CHECK(slurp(root.path / "supervisor" / "cgroup.procs") == "0");  // moved itself to a leaf
  CHECK(slurp(root.path / "cgroup.subtree_control") == "+memory");

  auto cgroup = ReplicaCgroup::create(MemoryMode::cgroup2, setup.dir, "shop.web.0",
                                      {64u << 20, 32u << 20}, &error);
  REQUIRE_MESSAGE(cgroup, error);
  CHECK(slurp(root.path / "shop.web.0" / "memory.max") == std::to_string(64u << 20));
  put(root.path / "shop.web.0" / "memory.current", "5000000\n");
  put(root.path / "shop.web.0" / "memory.stat", "anon 1\ninactive_file 1000000\n");
  CHECK(cgroup->usage() == 4000000u);  // working set: less inactive file cache
  CHECK(cgroup->oom_kills() == 0u);
  put(root.path / "shop.web.0" / "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
  CHECK(cgroup->oom_kills() == 1u);
  CHECK(cgroup->remove());
  CHECK_FALSE(fs::exists(root.path / "shop.web.0"));

  release_cgroup2(setup.dir);
  CHECK_FALSE(fs::exists(root.path / "supervisor"));
}

TEST_CASE("cgroup: adopt finds a running replica's cgroup; OOM kills count from a baseline") {
  TempDir root;
  std::string error;
  const std::string path = (root.path / "shop.web.0").string();
  CHECK_FALSE(ReplicaCgroup::adopt(MemoryMode::cgroup2, path, std::nullopt));  // none yet
  auto created =
      ReplicaCgroup::create(MemoryMode::cgroup2, root.path.string(), "shop.web.0", {64u << 20, {}},
                            &error);
  REQUIRE_MESSAGE(created, error);
  put(root.path / "shop.web.0" / "memory.events", "oom 2\noom_kill 2\n");
  // After an exec: the baseline carried (0, when the run began) keeps the two kills counted.
  auto carried = ReplicaCgroup::adopt(MemoryMode::cgroup2, path, created->oom_baseline());
  REQUIRE(carried);
  CHECK(carried->path() == path);
  CHECK(carried->oom_kills() == 2u);
  // After a crash: counted from the adoption on.
  auto found = ReplicaCgroup::adopt(MemoryMode::cgroup2, path, std::nullopt);
  REQUIRE(found);
  CHECK(found->oom_kills() == 0u);
  put(root.path / "shop.web.0" / "memory.events", "oom 3\noom_kill 3\n");
  CHECK(found->oom_kills() == 1u);
  CHECK_FALSE(ReplicaCgroup::adopt(MemoryMode::sampling, path, std::nullopt));
  CHECK(found->remove());
}

TEST_CASE("cgroup: without the memory controller or write access, sampling, with the reason") {
  TempDir root;
  put(root.path / "cgroup.controllers", "cpu pids\n");
  CgroupHost host{"0::/\n", "/nonexistent", "/nonexistent", root.path.string(), std::nullopt};
  MemorySetup setup = detect_memory_mode(host);
  CHECK(setup.mode == MemoryMode::sampling);
  CHECK(setup.reason.find("memory controller is not available") != std::string::npos);

  host.forced = MemoryMode::sampling;
  put(root.path / "cgroup.controllers", "memory\n");
  CHECK(detect_memory_mode(host).mode == MemoryMode::sampling);
  CHECK(detect_memory_mode(host).reason == "forced by DEPLOYCTL_MEMORY_MODE");
}

TEST_CASE("cgroup: a fake v1 tree is recognised by memory.limit_in_bytes") {
  TempDir root;
  put(root.path / "memory.limit_in_bytes", "9223372036854771712\n");
  CgroupHost host{"4:memory:/\n", "/nonexistent", "/nonexistent", root.path.string(),
                  MemoryMode::cgroup1};
  MemorySetup setup = detect_memory_mode(host);
  REQUIRE(setup.mode == MemoryMode::cgroup1);
  std::string error;
  auto cgroup = ReplicaCgroup::create(MemoryMode::cgroup1, setup.dir, "a.b.0", {1u << 20, {}},
                                      &error);
  REQUIRE_MESSAGE(cgroup, error);
  CHECK(slurp(root.path / "a.b.0" / "memory.limit_in_bytes") == std::to_string(1u << 20));
  put(root.path / "a.b.0" / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  CHECK(cgroup->oom_kills() == 2u);
}

// Real: the host's own v1 memory cgroup (as on the CI machine), when writable.
// Skipped (and counted so in doctest's summary) without a writable v1 memory controller.
TEST_CASE("cgroup: a child joins its v1 cgroup before exec; kill_all also gets escaped members" *
          doctest::skip(no_writable_cgroup1())) {
  MemorySetup setup = host_cgroup1();
  REQUIRE_MESSAGE(setup.mode == MemoryMode::cgroup1, setup.reason);
  std::string error;
  const std::string name = "unit-test-" + std::to_string(getpid());
  auto cgroup = ReplicaCgroup::create(MemoryMode::cgroup1, setup.dir, name, {256u << 20, {}},
                                      &error);
  REQUIRE_MESSAGE(cgroup, error);
  SpawnRequest request;
  // The shell's first act is reading its own cgroup: it must already be the new one.
  request.argv = {resolve_command("sh", std::getenv("PATH")), "-c",
                  "grep -q ':memory:.*/" + name + "$' /proc/self/cgroup || exit 3; "
                  "setsid sleep 300 & exec sleep 300"};
  request.cgroup_procs = cgroup->procs_file();
  SpawnResult result = spawn_process(request);
  REQUIRE_MESSAGE(result.pid > 0, result.message);
  std::vector<int> members;
  for (int i = 0; i < 400 && members.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    members = cgroup->members();
  }
  CHECK(members.size() == 2);  // the replica and the grandchild that left its session
  CHECK(cgroup->usage().value_or(0) > 0);
  cgroup->kill_all();
  int status = 0;
  REQUIRE(waitpid(result.pid, &status, 0) == result.pid);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
  bool removed = false;
  for (int i = 0; i < 400 && !(removed = cgroup->remove()); ++i) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(removed);
  CHECK_FALSE(fs::exists(cgroup->path()));
}

TEST_CASE("cgroup: joining a cgroup that cannot be written is an exec-pipe error") {
  SpawnRequest request;
  request.argv = {"/bin/true"};
  request.cgroup_procs = "/nonexistent/cgroup.procs";
  SpawnResult result = spawn_process(request);
  CHECK(result.pid < 0);
  CHECK(result.message.find("cannot join the memory cgroup '/nonexistent/cgroup.procs'") !=
        std::string::npos);
}

TEST_CASE("memory sampling: the tree of a real process and its PSS") {
  SpawnRequest request;
  request.argv = {resolve_command("sh", std::getenv("PATH")), "-c", "sleep 300 & wait"};
  SpawnResult result = spawn_process(request);
  REQUIRE(result.pid > 0);
  std::vector<pid_t> tree;
  for (int i = 0; i < 400 && tree.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    tree = process_tree(result.pid);
  }
  CHECK(tree.size() == 2);
  CHECK(tree_pss(result.pid).value_or(0) > 0);
  signal_group(result.pid, SIGKILL);
  waitpid(result.pid, nullptr, 0);
  CHECK_FALSE(tree_pss(result.pid));
}
