// Replicas an earlier supervisor of the same deployment left running when it died (issue 11,
// finding 4): nothing survives a supervisor by accident. The running supervisor records every
// replica's pid and start time in STATE/replicas.json; a later `up` or `down` of the same name
// (holding the deployment's lock, so no live supervisor owns them) stops those still alive.
// A pid counts only if /proc/PID/stat still shows the recorded start time: a reused pid is
// never signalled. Edge: /proc, kill(2). Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace deployctl {

struct RecordedReplica {
  std::string id;
  pid_t pid = -1;
  unsigned long long start_time = 0;  // /proc/PID/stat field 22 (clock ticks since boot)
  int stop_signal = 15;               // its service's stop.signal (SIGTERM by default)
  bool operator==(const RecordedReplica&) const = default;
};

// STATE/replicas.json of the deployment whose state directory is `state_dir`.
std::string replica_record_path(const std::string& state_dir);

// The start time of a live (not zombie) process; nullopt if it is gone.
std::optional<unsigned long long> process_start_time(pid_t pid);

// Replaces the record atomically (write + rename); an empty list removes it.
void write_replica_record(const std::string& path, const std::vector<RecordedReplica>& replicas);

// The recorded replicas still alive with the recorded start time.
std::vector<RecordedReplica> find_leftovers(const std::string& path);

// Stops `leftovers`: each one's stop signal and SIGCONT to each one's process group, SIGKILL to
// the groups still there after `grace`; waits (bounded: grace + 2 s) until they are gone. The
// record is removed. Returns those still alive at the end (normally none).
// The deployment's replica cgroups are emptied and removed too (tree_cgroup_leftovers.h): all of
// them, or with `others_adopted` (a new `up` takes over the other replicas) only these ones'.
std::vector<RecordedReplica> stop_leftovers(const std::string& path,
                                            const std::vector<RecordedReplica>& leftovers,
                                            std::chrono::milliseconds grace,
                                            bool others_adopted = false);

// For `down` when no supervisor answers: takes the deployment's lock at `lock_path` without
// waiting (nullopt if a supervisor holds it: the replicas are its own) and stops the leftovers
// recorded in `state_dir`. Returns the leftovers found (empty: none).
std::optional<std::vector<RecordedReplica>> stop_leftovers_if_unlocked(
    const std::string& lock_path, const std::string& state_dir, std::chrono::milliseconds grace,
    std::vector<RecordedReplica>* survivors);

// Waits at most `limit` for the supervisor holding the deployment's lock at `lock_path` to
// exit (the lock free, or no lock file). False if it still holds it.
bool wait_for_unlock(const std::string& lock_path, std::chrono::milliseconds limit);

// "web.0 (pid 12), web.1 (pid 13)"
std::string describe_leftovers(const std::vector<RecordedReplica>& leftovers);

}  // namespace deployctl
