// Surviving a crash of the supervisor (docs/upgrade.md, "Crash of the supervisor"): the fd
// keeper is kept in step with the fds that matter, STATE/adopt.json with what a successor needs,
// and a successor adopts the replicas (adopt()) and watches their exit by pidfd.
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <fstream>

#include "crash_adoption.h"
#include "deployment_state_json.h"
#include "read_file.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;

namespace {

int fd_of(const std::unique_ptr<asio::posix::stream_descriptor>& descriptor) {
  return descriptor && descriptor->is_open() ? descriptor->native_handle() : -1;
}

std::unique_ptr<asio::posix::stream_descriptor> wrap(asio::io_context& io, HandedFds& fds,
                                                     const std::string& name) {
  auto it = fds.find(name);
  if (it == fds.end()) return nullptr;
  auto descriptor = std::make_unique<asio::posix::stream_descriptor>(io, it->second);
  fds.erase(it);
  boost::system::error_code ignored;
  descriptor->non_blocking(true, ignored);
  return descriptor;
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".new";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << text << "\n";
  }
  std::rename(temporary.c_str(), path.c_str());
}

}  // namespace

void Supervisor::start_keeper() {
  std::string error;
  keeper_ = FdKeeper::start("/proc/self/exe", keeper_socket_path(paths_.dir), &error);
  if (!keeper_) {
    spdlog::warn("no fd keeper ({}): the replicas will not survive a crash of the supervisor",
                 error);
  }
}

// What must outlive this process, under names a successor understands (crash_adoption.h).
void Supervisor::sync_keeper() {
  if (!keeper_) return;
  std::map<std::string, int> fds;
  std::map<std::string, pid_t> pids;
  for (const auto& [name, service] : services_) {
    for (std::size_t i = 0; i < service->sockets.size(); ++i) {
      fds[listen_fd_name(name, i)] = service->sockets[i].fd;
    }
    for (const auto& [text, group] : service->replica_sockets) {
      for (const auto& socket : group->sockets()) {
        fds[replica_socket_fd_name(socket.replica, text)] = socket.fd;
      }
    }
  }
  for (const auto& [serial, replica] : replicas_) {
    if (replica->pid <= 0) continue;
    const std::pair<const char*, int> channels[] = {{"control", fd_of(replica->control)},
                                                    {"notify", fd_of(replica->notify)},
                                                    {"out", fd_of(replica->out.fd)},
                                                    {"err", fd_of(replica->err.fd)}};
    for (const auto& [channel, fd] : channels) {
      if (fd >= 0) fds[channel_fd_name(serial, channel)] = fd;
    }
    pids[channel_fd_name(serial, "pid")] = replica->pid;
  }
  keep_acme_sockets(fds);
  if (!keeper_->sync(fds, pids)) {
    spdlog::warn(
        "the fd keeper (pid {}) is gone: the replicas will not survive a crash of the "
        "supervisor until its next start",
        keeper_->pid());
    keeper_.reset();
  }
}

// The spec file's text as applied, read again only when the running services changed (start,
// reload). "" if the file no longer matches what runs: no successor can adopt then.
const std::string& Supervisor::applied_spec_text() {
  if (spec_text_.services == spec_.services && !spec_text_.services.empty()) return spec_text_.text;
  spec_text_.services = spec_.services;
  FileRead file = read_file(spec_.path, kMaxSpecBytes);
  LoadResult parsed = file.ok() ? parse_spec(file.text, spec_.path) : LoadResult{};
  const bool same =
      parsed.spec && parsed.spec->name == spec_.name && parsed.spec->services == spec_.services;
  spec_text_.text = same ? file.text : "";
  if (!same) {
    spdlog::warn(
        "{} no longer holds the spec that runs: a crash of this supervisor will stop "
        "the replicas (reload to fix)",
        spec_.path);
  }
  return spec_text_.text;
}

// STATE/adopt.json: rewritten only when its content changes (a state transition, a new pid),
// and not from one unsettled state to another: a crash in between ends in the same refusal
// (unsettled_reason, adoption.h), so a scale's `ready` events before the last are not written.
void Supervisor::record_adoption(const std::vector<RecordedReplica>& live) {
  const std::string path = adoption_record_path(paths_.dir);
  const std::string& spec_text = live.empty() ? "" : applied_spec_text();
  if (spec_text.empty()) {
    if (!adoption_written_.empty()) unlink(path.c_str());
    adoption_written_.clear();
    return;
  }
  const bool settled = unsettled_reason(core_.state()).empty();
  if (!settled && !adoption_written_.empty() && !adoption_written_settled_) return;
  json::Value doc;
  doc["format"] = kAdoptionRecordFormat;
  doc["spec_path"] = spec_.path;
  doc["spec_text"] = spec_text;
  doc["core"] = to_json(core_.state());
  doc["replica_sockets"] = carried_groups_json(replica_socket_groups(), false);  // group order
  json::Array replicas;
  for (const auto& recorded : live) {
    for (const auto& [serial, replica] : replicas_) {
      if (replica->pid != recorded.pid) continue;
      json::Value r;
      r["serial"] = serial;
      r["pid"] = replica->pid;
      r["start_time"] = recorded.start_time;
      r["speaks_control"] = replica->speaks_control;
      json::Array env;
      for (const auto& entry : replica->env) env.push_back(entry);
      r["env"] = std::move(env);
      replicas.push_back(std::move(r));
    }
  }
  doc["replicas"] = std::move(replicas);
  std::string text = json::dump(doc);
  if (text == adoption_written_) return;
  write_atomically(path, text);
  adoption_written_ = std::move(text);
  adoption_written_settled_ = settled;
}

// An adopted replica is not our child: its exit is seen on a pidfd, its status is unknown.
void Supervisor::watch_adopted(const ReplicaPtr& replica) {
  if (!replica->pidfd) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, replica->pid, 0));
    if (fd < 0) {  // gone already
      asio::post(io_, [this, replica, run = replica->run] {
        if (replica->run == run && replica->pid > 0) replica_exited(replica, {.unknown = true});
      });
      return;
    }
    replica->pidfd = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  }
  replica->pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, replica, run = replica->run](boost::system::error_code ec) {
                               if (ec || replica->run != run || replica->pid <= 0) return;
                               replica_exited(replica, {.unknown = true});
                             });
}

bool Supervisor::adopt(Adoption adoption, std::string* error) {
  core_ = Deployment(adoption.plan.state);
  adopt_replica_sockets(adoption.replica_sockets);
  make_management();
  if (!management_->listen(error)) return false;
  if (!start_metrics(error)) return false;
  watch_signals();
  watchdog_ping();
  start_tree_cgroups();  // before start_memory, as in start()
  start_memory();
  start_dbus();
  if (!start_acme(error, std::move(adoption.acme))) return false;  // before start_tls
  start_tls();
  std::string pids;
  for (const auto& r : json::as_array(json::get(adoption.record.doc, "replicas"))) {
    const auto serial = static_cast<std::uint64_t>(json::as_int(json::get(r, "serial")));
    const auto& adopted = adoption.plan.adopted;
    if (std::find(adopted.begin(), adopted.end(), serial) == adopted.end()) continue;
    auto replica = runtime(serial);
    if (!replica) continue;
    ++replica->run;
    replica->pid = static_cast<pid_t>(json::as_int(json::get(r, "pid")));
    replica->spawned_at = time_.now();
    replica->control = wrap(io_, adoption.fds, channel_fd_name(serial, "control"));
    replica->notify = wrap(io_, adoption.fds, channel_fd_name(serial, "notify"));
    replica->out.fd = wrap(io_, adoption.fds, channel_fd_name(serial, "out"));
    replica->err.fd = wrap(io_, adoption.fds, channel_fd_name(serial, "err"));
    replica->speaks_control = json::as_bool(json::get(r, "speaks_control"));
    for (const auto& entry : json::as_array(json::get(r, "env")))
      replica->env.push_back(json::as_string(entry));
    if (replica->spec->health.kind != HealthKind::none) {
      replica->health.emplace(replica->spec->health);
      replica->health->start(time_.now());
      schedule_health(replica);
    }
    adopt_tree_cgroup(replica);
    adopt_memory(replica, nullptr);  // its cgroup, found by path; OOM kills count from now
    watch_adopted(replica);
    read_control(replica);
    read_notify(replica);
    read_output(replica, replica->out);
    read_output(replica, replica->err);
    spdlog::info("{} (pid {}) adopted from a crashed supervisor", replica->id, replica->pid);
    publish_event({.time_ms = unix_time_ms(),
                   .kind = "adopted",
                   .service = replica->service,
                   .replica = replica->id,
                   .message = "pid " + std::to_string(replica->pid) + " taken over"});
    pids +=
        (pids.empty() ? "" : ", ") + replica->id + " (pid " + std::to_string(replica->pid) + ")";
  }
  for (auto& [name, fd] : adoption.fds) close(fd);  // channels of replicas not adopted
  for (std::uint64_t serial : adoption.plan.vanished) {
    if (auto replica = runtime(serial)) {
      spdlog::warn("{} exited while no supervisor ran; its exit status is unknown", replica->id);
      Event exited{.kind = Event::Kind::exited, .replica = serial};
      exited.status.unknown = true;
      enqueue({std::move(exited), replica->run});
    }
  }
  for (std::uint64_t serial : adoption.plan.rearm) {
    if (auto replica = runtime(serial)) arm_timer(replica, Duration(0));
  }
  start_keeper();
  after_event();
  sd_notify(0, "READY=1");
  const std::string message = spec_.name + " adopted " + (pids.empty() ? "no replica" : pids) +
                              " left running by a crashed supervisor";
  spdlog::info("{}", message);
  if (on_started_) std::exchange(on_started_, nullptr)(true, message);
  return true;
}

}  // namespace deployctl
