// The record of live replicas in STATE/replicas.json (leftovers.h): what a later `up` or
// `down` stops if this supervisor dies without stopping them, or adopts (supervisor_crash.cc).
#include <signal.h>

#include "leftovers.h"
#include "supervisor_state.h"

namespace deployctl {

// After each event: rewritten only when the set of live replica pids changed.
void Supervisor::record_replicas() {
  std::vector<RecordedReplica> live;
  for (const auto& [serial, replica] : replicas_) {
    if (replica->pid <= 0) continue;
    RecordedReplica entry{replica->id, replica->pid, 0, replica->spec->stop.signal};
    for (const auto& known : recorded_) {
      if (known.pid == entry.pid && known.id == entry.id) entry.start_time = known.start_time;
    }
    if (entry.start_time == 0) {
      auto start = process_start_time(replica->pid);
      if (!start) continue;  // exited already: its exit event is on its way
      entry.start_time = *start;
    }
    live.push_back(std::move(entry));
  }
  // A crash between these two writes leaves a record naming a replica whose channels the
  // keeper may lack: take_over() then does not adopt that replica (it stops it).
  record_adoption(live);
  sync_keeper();
  // Recorded too: `down` or a refused adoption stops them like replicas.
  if (keeper_ && !live.empty()) {
    if (auto entry = recorded_entry(kKeeperId, keeper_->pid(), SIGTERM)) live.push_back(*entry);
  }
  if (!live.empty()) record_acme_listeners(live);
  if (live == recorded_) return;
  recorded_ = std::move(live);
  write_replica_record(replica_record_path(paths_.dir), recorded_);
}

std::optional<RecordedReplica> Supervisor::recorded_entry(std::string id, pid_t pid,
                                                         int stop_signal) const {
  RecordedReplica entry{std::move(id), pid, 0, stop_signal};
  for (const auto& known : recorded_) {
    if (known.pid == entry.pid && known.id == entry.id) entry.start_time = known.start_time;
  }
  if (entry.start_time == 0) entry.start_time = process_start_time(entry.pid).value_or(0);
  if (entry.start_time == 0) return std::nullopt;
  return entry;
}

}  // namespace deployctl
