// The pre_start runner, tested with real processes on a real event loop: order, env and
// working_dir, output, failures, timeouts that kill the whole group, exec failures, cancel.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "child_watcher.h"
#include "pre_start.h"
#include "temp_dir.h"

using namespace deployctl;
using deployctl::test::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Processes of group `pgid` that are still alive (zombies count as gone).
std::vector<pid_t> live_group_members(pid_t pgid) {
  std::vector<pid_t> members;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_file("/proc/" + name + "/stat");
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(close_paren + 1));
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (rest >> state >> ppid >> pgrp && pgrp == pgid && state != 'Z') {
      members.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return members;
}

PreStartStep sh_step(const std::string& name, const std::string& script,
                     Duration timeout = Duration{2000}) {
  PreStartStep step;
  step.name = name;
  step.command = {"/bin/sh", "-c", script};
  step.timeout = timeout;
  return step;
}

struct Line {
  std::string step, text;
  bool is_stderr;
  bool operator==(const Line&) const = default;
};

// One event loop, one ChildWatcher, one runner; collects what the runner reports.
struct Harness {
  boost::asio::io_context io;
  ChildWatcher children{io};
  std::vector<Line> lines;
  std::optional<PreStartResult> result;
  SteadyClock::time_point started_at;
  std::unique_ptr<PreStartRunner> runner;

  void start(std::vector<PreStartStep> steps) {
    runner = std::make_unique<PreStartRunner>(
        io, children, std::move(steps),
        [this](const std::string& step, const std::string& line, bool is_stderr) {
          lines.push_back({step, line, is_stderr});
        },
        [this](PreStartResult done) {
          REQUIRE_FALSE(result.has_value());  // exactly once
          result = std::move(done);
        });
    started_at = SteadyClock::now();
    runner->start();
  }

  // Runs the loop until `done` or `limit`; the loop keeps reaping children meanwhile.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto deadline = SteadyClock::now() + limit;
    while (!done() && SteadyClock::now() < deadline) io.run_for(5ms);
    return done();
  }

  const PreStartResult& wait_result(std::chrono::milliseconds limit = 2500ms) {
    REQUIRE(run_until([this] { return result.has_value(); }, limit));
    return *result;
  }

  long long elapsed_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started_at)
        .count();
  }

  bool group_gone(pid_t pgid) {
    return run_until([pgid] { return live_group_members(pgid).empty(); }, 1000ms);
  }

  pid_t wait_for_pid_file(const std::string& path) {
    REQUIRE(run_until([&path] { return !read_file(path).empty() && read_file(path).back() == '\n'; },
                      2000ms));
    return static_cast<pid_t>(std::stol(read_file(path)));
  }
};

// SIGKILLs a group at scope exit, so a failing test leaves nothing behind.
struct GroupReaper {
  pid_t pgid = -1;
  ~GroupReaper() {
    if (pgid > 0) kill(-pgid, SIGKILL);
  }
};

}  // namespace

TEST_CASE("pre_start: no steps is ok at once, and done is never called from inside start()") {
  Harness h;
  h.start({});
  CHECK_FALSE(h.result.has_value());
  const PreStartResult& result = h.wait_result(500ms);
  CHECK(result.ok);
  CHECK(result.step.empty());
  CHECK(result.message.empty());
  CHECK(h.elapsed_ms() < 200);
}

TEST_CASE("pre_start: steps run in order, each after the previous one finished") {
  TempDir dir;
  const std::string order = dir.file("order");
  Harness h;
  // The first step is the slowest: run concurrently, it would append last.
  h.start({sh_step("first", "sleep 0.3; echo first >> " + order),
           sh_step("second", "sleep 0.1; echo second >> " + order),
           sh_step("third", "echo third >> " + order)});
  const PreStartResult& result = h.wait_result();
  CHECK(result.ok);
  CHECK(result.message.empty());
  CHECK(read_file(order) == "first\nsecond\nthird\n");
  REQUIRE(result.steps.size() == 3);
  CHECK(result.steps[0].step == "first");
  CHECK(result.steps[0].seconds >= 0.3);
  CHECK(result.steps[2].result == "ok");
}

TEST_CASE("pre_start: env, working_dir and brace escapes are applied; supervisor-only env is not "
          "passed on") {
  TempDir dir;
  setenv("NOTIFY_SOCKET", "/run/deployctl-test-notify", 1);
  setenv("DEPLOYCTL_PRE_START_TEST_INHERITED", "inherited", 1);
  PreStartStep step = sh_step("env",
                              "printf '%s|%s|%s|%s\\n' \"$GREETING\" \"$1\" "
                              "\"${NOTIFY_SOCKET-unset}\" \"$DEPLOYCTL_PRE_START_TEST_INHERITED\" "
                              "> out; pwd >> out");
  step.command.push_back("sh");
  step.command.push_back("{{braced}}");
  step.env = {{"GREETING", "hello {{world}}"}};
  step.working_dir = dir.path.string();
  Harness h;
  h.start({step});
  const PreStartResult& result = h.wait_result();
  unsetenv("NOTIFY_SOCKET");
  unsetenv("DEPLOYCTL_PRE_START_TEST_INHERITED");
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(read_file(dir.file("out")) ==
        "hello {world}|{braced}|unset|inherited\n" + dir.path.string() + "\n");
}

TEST_CASE("pre_start: output lines reach on_line with the step's name and stream") {
  Harness h;
  h.start({sh_step("talk", "echo out1; echo err1 >&2; printf 'no newline'"),
           sh_step("quiet", "echo second step >&2")});
  const PreStartResult& result = h.wait_result();
  CHECK(result.ok);
  REQUIRE(h.lines.size() == 4);
  auto has = [&h](const Line& line) {
    return std::find(h.lines.begin(), h.lines.end(), line) != h.lines.end();
  };
  CHECK(has({"talk", "out1", false}));
  CHECK(has({"talk", "err1", true}));
  CHECK(has({"talk", "no newline", false}));
  CHECK(h.lines.back() == Line{"quiet", "second step", true});
}

TEST_CASE("pre_start: a failing step stops the run with its message and last lines") {
  TempDir dir;
  Harness h;
  h.start({sh_step("one", "touch " + dir.file("one")),
           sh_step("two", "echo working; echo 'it broke' >&2; exit 3"),
           sh_step("three", "touch " + dir.file("three"))});
  const PreStartResult& result = h.wait_result();
  CHECK_FALSE(result.ok);
  CHECK(result.step == "two");
  CHECK(result.message == "pre_start step 'two' failed: exited with code 3");
  CHECK(result.last_lines == std::vector<std::string>{"working", "it broke"});
  CHECK(fs::exists(dir.file("one")));
  h.io.run_for(100ms);
  CHECK_FALSE(fs::exists(dir.file("three")));
  // The metrics' outcomes: every step that ran, in order, with its result.
  REQUIRE(result.steps.size() == 2);
  CHECK(result.steps[0].step == "one");
  CHECK(result.steps[0].result == "ok");
  CHECK(result.steps[1].step == "two");
  CHECK(result.steps[1].result == "failed");
}

TEST_CASE("pre_start: the last 20 lines survive a step that writes a lot and fails at once") {
  Harness h;
  h.start({sh_step("noisy", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i; done; "
                            "exit 1")});
  const PreStartResult& result = h.wait_result();
  CHECK_FALSE(result.ok);
  REQUIRE(result.last_lines.size() == 20);
  CHECK(result.last_lines.front() == "line 2981");
  CHECK(result.last_lines.back() == "line 3000");
  CHECK(h.lines.size() == 3000);
}

TEST_CASE("pre_start: a step killed by a signal says so") {
  Harness h;
  h.start({sh_step("doomed", "kill -KILL $$")});
  const PreStartResult& result = h.wait_result();
  CHECK_FALSE(result.ok);
  CHECK(result.message == "pre_start step 'doomed' failed: killed by signal 9 (SIGKILL)");
}

TEST_CASE("pre_start: a timeout kills the step's whole process group") {
  TempDir dir;
  Harness h;
  GroupReaper reaper;
  h.start({sh_step("slow",
                   "echo $$ > " + dir.file("pgid") + "; sleep 100 & sleep 100",
                   Duration{400}),
           sh_step("never", "touch " + dir.file("never"))});
  reaper.pgid = h.wait_for_pid_file(dir.file("pgid"));
  // sh and both sleeps are running in the step's group before the deadline.
  CHECK(h.run_until([&] { return live_group_members(reaper.pgid).size() == 3; }, 1000ms));
  const PreStartResult& result = h.wait_result();
  CHECK_FALSE(result.ok);
  CHECK(result.step == "slow");
  CHECK(result.message ==
        "pre_start step 'slow' timed out after 400ms; its process group was killed");
  CHECK(h.elapsed_ms() < 1500);  // SIGTERM was enough: no kill grace spent
  REQUIRE(result.steps.size() == 1);
  CHECK(result.steps[0].result == "timeout");
  CHECK(result.steps[0].seconds >= 0.4);
  CHECK(h.group_gone(reaper.pgid));
  CHECK_FALSE(fs::exists(dir.file("never")));
}

TEST_CASE("pre_start: a step that ignores SIGTERM is SIGKILLed after the kill grace") {
  TempDir dir;
  Harness h;
  GroupReaper reaper;
  h.start({sh_step("stubborn", "trap '' TERM; echo $$ > " + dir.file("pgid") + "; sleep 100",
                   Duration{200})});
  reaper.pgid = h.wait_for_pid_file(dir.file("pgid"));
  const PreStartResult& result = h.wait_result(2900ms);
  CHECK(result.message ==
        "pre_start step 'stubborn' timed out after 200ms; its process group was killed");
  CHECK(h.elapsed_ms() >= 200 + kPreStartKillGrace.count());
  CHECK(h.group_gone(reaper.pgid));
}

TEST_CASE("pre_start: a process that left the group and holds the pipe cannot hold the runner") {
  TempDir dir;
  const std::string escaped_file = dir.file("escaped");
  Harness h;
  // The step waits until the escape happened: its exit kills whatever is left in its group.
  h.start({sh_step("daemonizes",
                   "setsid sh -c 'echo $$ > " + escaped_file + "; exec sleep 100' & "
                   "while [ ! -s " + escaped_file + " ]; do sleep 0.01; done; echo started",
                   Duration{2000})});
  const pid_t escaped = h.wait_for_pid_file(escaped_file);
  GroupReaper reaper{escaped};  // it leads its own group after setsid
  const PreStartResult& result = h.wait_result();
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(h.elapsed_ms() < 1800);  // the drain grace, not the step's timeout
  CHECK(std::find(h.lines.begin(), h.lines.end(), Line{"daemonizes", "started", false}) !=
        h.lines.end());
}

TEST_CASE("pre_start: a command that cannot be executed is reported as such") {
  TempDir dir;
  PreStartStep step;
  step.name = "migrate";
  step.command = {"./manage", "migrate"};
  step.working_dir = dir.path.string();
  Harness h;
  h.start({step});
  const PreStartResult& result = h.wait_result();
  CHECK_FALSE(result.ok);
  CHECK(result.step == "migrate");
  CHECK(result.message ==
        "pre_start step 'migrate' failed: cannot execute './manage': No such file or directory");
  CHECK(result.last_lines.empty());
}

TEST_CASE("pre_start: cancel kills the running step and runs no further step") {
  TempDir dir;
  Harness h;
  GroupReaper reaper;
  h.start({sh_step("long", "echo $$ > " + dir.file("pgid") + "; sleep 100 & sleep 100"),
           sh_step("after", "touch " + dir.file("after"))});
  reaper.pgid = h.wait_for_pid_file(dir.file("pgid"));
  h.runner->cancel();
  CHECK_FALSE(h.result.has_value());
  const PreStartResult& result = h.wait_result(1000ms);
  CHECK_FALSE(result.ok);
  CHECK(result.step == "long");
  CHECK(result.message == "pre_start step 'long' was cancelled; its process group was killed");
  CHECK(h.group_gone(reaper.pgid));
  h.io.run_for(100ms);
  CHECK_FALSE(fs::exists(dir.file("after")));
}

TEST_CASE("pre_start: destroying the runner mid-step kills the step and never calls done") {
  TempDir dir;
  Harness h;
  GroupReaper reaper;
  h.start({sh_step("orphaned", "echo $$ > " + dir.file("pgid") + "; sleep 100")});
  reaper.pgid = h.wait_for_pid_file(dir.file("pgid"));
  h.runner.reset();
  CHECK(h.group_gone(reaper.pgid));
  h.io.run_for(100ms);
  CHECK_FALSE(h.result.has_value());
}
