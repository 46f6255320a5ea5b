// Runs the spec's [[pre_start]] steps one after another on the event loop, never blocking it
// (edge: real processes). Not thread-safe; use from the loop's thread only.
//
// Each step gets the supervisor's environment (minus the socket-activation, watchdog and replica
// control variables) plus its own env, its working_dir, stdin from /dev/null, and its own process
// group. Every argument and env value goes through expand_placeholders (only "{{"/"}}" apply).
// On timeout the step's group gets SIGTERM (and SIGCONT), then SIGKILL kPreStartKillGrace later if
// the step is still alive. A step is finished only once it has exited and both its pipes reached
// EOF; a process that escaped the group and still holds a pipe open is waited for at most
// kPreStartDrainGrace (only 100 ms once the step's deadline is near or past, or it was
// cancelled), then what is already in the pipe is read and the step's exit status decides.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "asio.h"
#include "child_watcher.h"
#include "spec.h"

namespace deployctl {

inline constexpr std::chrono::milliseconds kPreStartKillGrace{2000};
inline constexpr std::chrono::milliseconds kPreStartDrainGrace{1000};
inline constexpr std::size_t kPreStartTailLines = 20;

// One step that ran: its `result` ("ok", "failed", "timeout" or "cancelled") and how long it
// took, from its start to its end (or to the failure to start it).
struct PreStartOutcome {
  std::string step;
  std::string result;
  double seconds = 0;
};

struct PreStartResult {
  bool ok = true;
  std::string step;                     // failing step's name
  std::string message;                  // e.g. "pre_start step 'migrate' failed: exited with code 1"
  std::vector<std::string> last_lines;  // last 20 lines of the step's output (stdout and stderr
                                        // interleaved as read)
  std::vector<PreStartOutcome> steps;   // every step that ran, in order
};

// Shows one line of a step's output as `pre_start.NAME | line` on stdout or stderr.
void print_pre_start_line(const std::string& step, const std::string& line, bool is_stderr);

class PreStartRunner {
 public:
  using OnLine =
      std::function<void(const std::string& step, const std::string& line, bool is_stderr)>;
  using Done = std::function<void(PreStartResult)>;

  // `io` and `children` must outlive the runner. Callbacks run on the loop, never from inside
  // start() or cancel(); `done` may destroy the runner.
  PreStartRunner(boost::asio::io_context& io, ChildWatcher& children,
                 std::vector<PreStartStep> steps, OnLine on_line, Done done);
  // Destroying the runner mid-step SIGKILLs the step's group; `done` is then never called.
  ~PreStartRunner();
  PreStartRunner(const PreStartRunner&) = delete;
  PreStartRunner& operator=(const PreStartRunner&) = delete;

  // Runs the steps in order, stopping at the first failure; calls `done` exactly once (ok when
  // there are no steps). Call at most once.
  void start();
  // SIGKILLs the running step's group and runs no further step; `done` is then called with
  // ok = false. No effect once `done` has been scheduled.
  void cancel();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace deployctl
