// Upgrade in place (docs/upgrade.md): the edges of re-executing the supervisor with its state.
// The running supervisor checks the new binary (`NEW --version`, then `NEW upgrade-check
// --state-fd N`, which must read the very state it is about to be given), writes its state to
// a memfd, clears FD_CLOEXEC on every fd it carries and execs `NEW resume --state-fd N`; same
// pid, so replicas stay its children. Not thread-safe; call from the event-loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "deployment_state.h"
#include "json.h"
#include "spec.h"

namespace deployctl {

// The state document's format: `upgrade-check` accepts exactly the formats it can resume from.
inline constexpr int kUpgradeStateFormat = 1;
// How long each check of the new binary may take before the upgrade is refused.
inline constexpr std::chrono::milliseconds kUpgradeCheckTimeout{5000};

// What start-up knows that the Supervisor carries across an exec.
struct UpgradeContext {
  std::string executable;  // the binary this process runs (readlink /proc/self/exe at start)
  int lock_fd = -1;        // the deployment's flock
  bool detached = false;   // `up -d`: logs go to STATE/supervisor.log
  int upgrades = 0;        // successful upgrades in place since `up`
  int upgrade_failures = 0;
  std::string upgrade_error;  // the last failure, for status
};

// The path of the running executable; "" if unknown.
std::string current_executable();

struct CheckResult {
  bool ok = false;
  std::string output;  // stdout + stderr, trimmed, at most 4 KiB
};
// Runs argv (argv[0] a path) with stdin /dev/null, waits at most `limit`; ok if it exited 0.
// Blocks the caller (bounded); the child is killed on timeout. `keep_fd` stays open in it.
CheckResult run_check(const std::vector<std::string>& argv, std::chrono::milliseconds limit,
                      int keep_fd = -1);

// A memfd (without close-on-exec) holding `text`; -1 with *error on failure.
int write_state_fd(const std::string& text, std::string* error);
// The whole content of a state fd, from offset 0; nullopt if unreadable or over 64 MiB.
std::optional<std::string> read_state_fd(int fd);
// A state document, decoded: the whole document, the spec it runs and the core's state.
struct CarriedState {
  json::Value doc;
  Spec spec;
  DeploymentState core;
};
// nullopt with *error unless `text` is a state of a known format whose spec and core state
// this binary reads.
std::optional<CarriedState> decode_state(const std::string& text, std::string* error);

// Every fd a state document names (lock, management, listen sockets, per-replica sockets,
// replica channels, the acme services' http_listen sockets).
std::vector<int> carried_fds(const json::Value& doc);
// Sets or clears FD_CLOEXEC on each fd >= 0.
void set_cloexec(const std::vector<int>& fds, bool on);

// `deployctl upgrade-check --state-fd N [--state-version V]`: exit 0 only if this binary can
// resume from that state. `deployctl resume --state-fd N`: the re-executed supervisor.
int run_upgrade_check(int argc, char** argv);

}  // namespace deployctl
