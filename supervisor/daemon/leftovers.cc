#include "leftovers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "json.h"
#include "read_file.h"
#include "tree_cgroup_leftovers.h"

namespace deployctl {

std::string replica_record_path(const std::string& state_dir) {
  return state_dir + "/replicas.json";
}

std::optional<unsigned long long> process_start_time(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string text =
      read_file("/proc/" + std::to_string(pid) + "/stat", kMaxKernelBytes).text;
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string state;
  fields >> state;  // field 3
  if (state == "Z" || state == "X") return std::nullopt;
  std::string skip;
  for (int field = 4; field < 22; ++field) fields >> skip;
  unsigned long long start = 0;
  if (!(fields >> start)) return std::nullopt;
  return start;
}

void write_replica_record(const std::string& path, const std::vector<RecordedReplica>& replicas) {
  if (replicas.empty()) {
    unlink(path.c_str());
    return;
  }
  json::Array list;
  for (const auto& replica : replicas) {
    json::Value entry;
    entry["id"] = replica.id;
    entry["pid"] = replica.pid;
    entry["start_time"] = replica.start_time;
    entry["stop_signal"] = replica.stop_signal;
    list.push_back(std::move(entry));
  }
  const std::string temporary = path + ".new";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << json::dump(json::Value(std::move(list))) << "\n";
  }
  std::rename(temporary.c_str(), path.c_str());
}

std::vector<RecordedReplica> find_leftovers(const std::string& path) {
  std::vector<RecordedReplica> alive;
  FileRead file = read_file(path, kMaxStateBytes);
  auto list = file.ok() ? json::parse(file.text) : std::nullopt;
  if (!list) return alive;
  for (const auto& entry : json::as_array(*list)) {
    RecordedReplica replica{
        json::as_string(json::get(entry, "id")),
        static_cast<pid_t>(json::as_int(json::get(entry, "pid"), -1)),
        static_cast<unsigned long long>(json::as_int(json::get(entry, "start_time"))),
        static_cast<int>(json::as_int(json::get(entry, "stop_signal"), SIGTERM))};
    if (replica.pid > 1 && replica.pid != getpid() &&
        process_start_time(replica.pid) == replica.start_time) {
      alive.push_back(std::move(replica));
    }
  }
  return alive;
}

namespace {

std::vector<RecordedReplica> still_alive(const std::vector<RecordedReplica>& replicas) {
  std::vector<RecordedReplica> alive;
  for (const auto& replica : replicas) {
    if (process_start_time(replica.pid) == replica.start_time) alive.push_back(replica);
  }
  return alive;
}

// Each replica leads its own process group (spawn_process): the group takes its descendants.
// `signal` 0: each one's stop signal.
void signal_groups(const std::vector<RecordedReplica>& replicas, int signal) {
  for (const auto& replica : replicas) {
    const int sent = signal != 0 ? signal : replica.stop_signal > 0 ? replica.stop_signal : SIGTERM;
    kill(getpgid(replica.pid) == replica.pid ? -replica.pid : replica.pid, sent);
  }
}

std::vector<RecordedReplica> wait_gone(const std::vector<RecordedReplica>& replicas,
                                       std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto alive = still_alive(replicas);
  while (!alive.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    alive = still_alive(alive);
  }
  return alive;
}

}  // namespace

std::vector<RecordedReplica> stop_leftovers(const std::string& path,
                                            const std::vector<RecordedReplica>& leftovers,
                                            std::chrono::milliseconds grace, bool others_adopted) {
  signal_groups(leftovers, 0);
  signal_groups(leftovers, SIGCONT);
  auto alive = wait_gone(leftovers, grace);
  if (!alive.empty()) {
    signal_groups(still_alive(alive), SIGKILL);
    alive = wait_gone(alive, std::chrono::seconds(2));
  }
  if (alive.empty()) unlink(path.c_str());
  // Their descendants that left the process groups, where they have cgroups (tree_cgroup.h);
  // the record lives in the state dir, <runtime dir>/<deployment>.
  const std::filesystem::path state_dir = std::filesystem::path(path).parent_path();
  std::vector<std::string> ids;
  for (const auto& replica : leftovers) ids.push_back(replica.id);
  remove_deployment_cgroups(state_dir.filename().string(), state_dir.string(),
                            others_adopted ? &ids : nullptr);
  return alive;
}

std::optional<std::vector<RecordedReplica>> stop_leftovers_if_unlocked(
    const std::string& lock_path, const std::string& state_dir, std::chrono::milliseconds grace,
    std::vector<RecordedReplica>* survivors) {
  const std::string record = replica_record_path(state_dir);
  if (access(record.c_str(), F_OK) != 0) return std::vector<RecordedReplica>{};
  int lock = open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
  if (lock < 0) return std::vector<RecordedReplica>{};
  if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
    close(lock);
    return std::nullopt;
  }
  auto leftovers = find_leftovers(record);
  *survivors = stop_leftovers(record, leftovers, grace);
  close(lock);
  return leftovers;
}

bool wait_for_unlock(const std::string& lock_path, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int lock = open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
    if (lock < 0) return true;
    const bool free = flock(lock, LOCK_EX | LOCK_NB) == 0;
    close(lock);  // releases it again
    if (free) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string describe_leftovers(const std::vector<RecordedReplica>& leftovers) {
  std::string text;
  for (const auto& replica : leftovers) {
    text += (text.empty() ? "" : ", ") + replica.id + " (pid " + std::to_string(replica.pid) + ")";
  }
  return text;
}

}  // namespace deployctl
