#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <spdlog/spdlog.h>

#include "accepting.h"
#include "asio.h"
#include "control_protocol.h"
#include "load.h"
#include "log_writer.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;

// ---- edges: control socket and health -------------------------------------------------------

void Supervisor::read_control(const ReplicaPtr& replica) {
  if (!replica->control) return;
  const auto run = replica->run;
  replica->control->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !replica->control) return;
        char buffer[control::kMaxMessage + 1];
        // At most a batch per wake-up, so one chatty replica cannot starve the others, and only
        // what its message budget admits is handled.
        const auto now = time_.now();
        for (int i = 0; i < MessageBudget::kBatch; ++i) {
          ssize_t n = recv(replica->control->native_handle(), buffer, sizeof buffer,
                           MSG_DONTWAIT | MSG_TRUNC);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (n <= 0) {  // EOF: the replica closed its end (it is exiting)
            replica->control.reset();
            return;
          }
          if (!replica->messages.admit(now)) continue;
          control::DecodeResult decoded;
          if (static_cast<std::size_t>(n) > control::kMaxMessage) {
            decoded.error = "message of " + std::to_string(n) + " bytes exceeds the limit of " +
                            std::to_string(control::kMaxMessage);
          } else {
            decoded = control::decode(std::string_view(buffer, static_cast<std::size_t>(n)));
          }
          if (!decoded.message) {
            spdlog::warn("{} (pid {}) broke the control protocol ({}); replacing it", replica->id,
                         replica->pid, decoded.error);
            replica->control.reset();
            replica_event(replica, Event::Kind::protocol_error);
            return;
          }
          replica->speaks_control = true;
          on_control_message(replica, *decoded.message);
          if (replica->run != run || !replica->control) return;
        }
        read_on(replica, [this, replica] { read_control(replica); });
      });
}

// Calls `next` (which reads the replica's messages again) now, or once the pause its message
// budget asks for has passed.
void Supervisor::read_on(const ReplicaPtr& replica, std::function<void()> next) {
  const auto pause = replica->messages.pause(time_.now());
  if (pause.count() <= 0) return next();
  auto timer = std::make_shared<asio::steady_timer>(io_, pause);
  timer->async_wait(
      [replica, run = replica->run, timer, next = std::move(next)](boost::system::error_code ec) {
        if (!ec && replica->run == run && !replica->removed) next();
      });
}

void Supervisor::on_control_message(const ReplicaPtr& replica, const control::Message& message) {
  if (message.status) replica->status_text = *message.status;
  if (message.requests) replica->requests = message.requests;
  if (message.pong && replica->health) on_health_pass(replica, *message.pong);
  if (message.watchdog && replica->health) replica->health->on_alive(time_.now());
  if (message.ready) replica_event(replica, Event::Kind::ready);
}

int Supervisor::open_notify_socket(const Replica& replica, std::string* name) const {
  // Abstract address: nothing on disk to clean up; unique per supervisor, replica and run.
  *name = "@deployctl/" + std::to_string(getpid()) + "/" + replica.id + "/" +
          std::to_string(replica.run + 1);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name->data() + 1, name->size() - 1);
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name->size());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    spdlog::warn("{}: no NOTIFY_SOCKET: {}", replica.id, std::strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// sd_notify messages from software we did not write: what does not decode is logged and
// ignored, never a reason to replace the replica.
void Supervisor::read_notify(const ReplicaPtr& replica) {
  if (!replica->notify) return;
  const auto run = replica->run;
  replica->notify->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !replica->notify) return;
        char buffer[control::kMaxMessage + 1];
        const auto now = time_.now();
        for (int i = 0; i < MessageBudget::kBatch; ++i) {
          ssize_t n = recv(replica->notify->native_handle(), buffer, sizeof buffer, MSG_DONTWAIT);
          if (n < 0) break;
          if (!replica->messages.admit(now)) continue;
          auto decoded = control::decode(std::string_view(buffer, static_cast<std::size_t>(n)));
          if (!decoded.message) {
            spdlog::warn("{}: ignoring an sd_notify message ({})", replica->id, decoded.error);
            continue;
          }
          on_control_message(replica, *decoded.message);
          if (replica->run != run || !replica->notify) return;
        }
        read_on(replica, [this, replica] { read_notify(replica); });
      });
}

void Supervisor::send_control(const ReplicaPtr& replica, const std::string& message) {
  if (!replica->control) return;
  // Never blocks: a replica that does not read its socket just misses the message.
  send(replica->control->native_handle(), message.data(), message.size(),
       MSG_DONTWAIT | MSG_NOSIGNAL);
}

void Supervisor::schedule_health(const ReplicaPtr& replica) {
  if (!replica->health) return;
  const auto run = replica->run;
  replica->health_timer.expires_at(replica->health->next_deadline());
  replica->health_timer.async_wait([this, replica, run](boost::system::error_code ec) {
    if (ec || replica->run != run || state_of(*replica) != ReplicaState::ready) return;
    const auto now = time_.now();
    const int misses_before = replica->health->misses();
    Health health = replica->health->check(now);
    if (health == Health::unhealthy) {
      spdlog::warn("{} (pid {}) missed {} health checks in a row; replacing it", replica->id,
                   replica->pid, replica->health->misses());
      replica_event(replica, Event::Kind::unhealthy);
      return;
    }
    if (replica->health->misses() > misses_before) {
      spdlog::warn("{} (pid {}) missed a health check ({} of {})", replica->id, replica->pid,
                   replica->health->misses(), replica->spec->health.failures);
    }
    if (auto seq = replica->health->ping_due(now)) {
      if (is_probe(replica->spec->health.kind)) {
        timed_probe(replica, [this, replica, run, seq = *seq](ProbeResult result) {
                      if (result.ok && replica->run == run) on_health_pass(replica, seq);
                    });
      } else {
        send_control(replica, control::encode_ping(*seq));
      }
    }
    schedule_health(replica);
  });
}

// A pass re-arms the health timer for the next ping at once: the wake-up at the pass's
// deadline would find nothing to do (one wake-up per check instead of two).
void Supervisor::on_health_pass(const ReplicaPtr& replica, std::uint64_t seq) {
  const auto before = replica->health->next_deadline();
  replica->health->on_pong(seq, time_.now());
  if (replica->health->next_deadline() != before && state_of(*replica) == ReplicaState::ready) {
    schedule_health(replica);
  }
}

// Until it is ready, a probed replica is probed 5 ms after its spawn, then at pauses that grow
// with its age (half of it) up to 100 ms (or the interval, if shorter): a server that listens
// within milliseconds is ready within milliseconds, a slow one costs at most ~10 probes/s.
// The first pass (or READY=1, whichever comes first) makes it ready. On a shared socket any
// replica may answer the probe: a pass counts once the replica itself is seen accepting on the
// socket, or after kSharedSocketGrace of passes (a server /proc cannot see accepting).
void Supervisor::probe_until_ready(const ReplicaPtr& replica,
                                   std::optional<TimePoint> passing_since) {
  const auto run = replica->run;
  const auto age = std::chrono::duration_cast<Duration>(time_.now() - replica->spawned_at);
  const auto pause = std::min<Duration>({std::max<Duration>(Duration{5}, age / 2), Duration{100},
                                         replica->spec->health.interval});
  replica->health_timer.expires_after(pause);
  replica->health_timer.async_wait([this, replica, run,
                                    passing_since](boost::system::error_code ec) {
    if (ec || replica->run != run || state_of(*replica) != ReplicaState::starting) return;
    timed_probe(replica, [this, replica, run, passing_since](ProbeResult result) {
                  if (replica->run != run || state_of(*replica) != ReplicaState::starting) {
                    return;
                  }
                  const auto now = time_.now();
                  if (!result.ok) {
                    probe_until_ready(replica);
                  } else if (accepts_itself(*replica)) {
                    replica_event(replica, Event::Kind::ready);
                  } else if (now - passing_since.value_or(now) >= kSharedSocketGrace) {
                    spdlog::warn(
                        "{} (pid {}): probes of the shared socket pass but it is not "
                        "seen accepting on it; counting it ready",
                        replica->id, replica->pid);
                    replica_event(replica, Event::Kind::ready);
                  } else {
                    probe_until_ready(replica, passing_since.value_or(now));
                  }
                });
  });
}

// Whether a probe's pass speaks for `replica`: always on its own port; on the service's shared
// socket, or its own per-replica socket (to which the probe may not be steered), only once the
// replica accepts on that socket (see accepting.h).
bool Supervisor::accepts_itself(const Replica& replica) const {
  const ServiceSpec& spec = *replica.spec;
  if (const int own = own_socket(replica); own >= 0 && spec.health.kind != HealthKind::exec) {
    return replica_port(spec, replica.index) || tree_accepts_on(replica.pid, own);
  }
  const auto& sockets = services_.at(replica.service)->sockets;
  const bool shared = !replica_port(spec, replica.index) && !sockets.empty() &&
                      spec.health.kind != HealthKind::exec;
  return !shared || tree_accepts_on(replica.pid, sockets.front().fd);
}

// http and tcp probe the replica's own port when it has one, else the service's first listen
// address (a wildcard address is probed on loopback).
ProbeTarget Supervisor::probe_target(const Replica& replica) const {
  const ServiceSpec& spec = *replica.spec;
  ProbeTarget target;
  target.kind = spec.health.kind;
  target.path = spec.health.path;
  target.tls = spec.tls.has_value();
  const auto port = replica_port(spec, replica.index);
  if (port) {
    target.host = "127.0.0.1";
    target.port = static_cast<std::uint16_t>(*port);
  } else if (!spec.listen.empty()) {
    const auto& address = spec.listen.front();
    target.host = address.host == "0.0.0.0" ? "127.0.0.1" : address.host == "::" ? "::1" : address.host;
    target.port = address.port;
  }
  if (target.kind == HealthKind::exec) {
    for (const auto& arg : spec.health.command) {
      target.argv.push_back(expand_placeholders(arg, placeholders(spec, replica.index)));
    }
    target.argv[0] = resolve_command(target.argv[0], path_variable(replica.env));
    target.env = replica.env;
    // A replica of another user has its pair as descriptors the probe does not inherit: the
    // probe (the supervisor's user) reads the files (supervisor_tls.cc).
    if (auto files = placeholders(spec, replica.index); files.tls_cert && files.tls_key) {
      set_variable(target.env, control::kTlsCertEnv, *files.tls_cert);
      set_variable(target.env, control::kTlsKeyEnv, *files.tls_key);
    }
    target.working_dir = spec.working_dir;
  }
  return target;
}

// ---- edges: replica output ------------------------------------------------------------------

void Supervisor::read_output(const ReplicaPtr& replica, OutputPipe& pipe) {
  if (!pipe.fd) return;
  const auto run = replica->run;
  pipe.fd->async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, replica, &pipe, run](boost::system::error_code ec) {
        if (ec || replica->run != run || !pipe.fd) return;
        const auto now = time_.now();
        std::size_t allowed = replica->budget.available(now);
        if (allowed < 512) {  // over budget: leave the bytes in the pipe; the writer slows down
          pipe.pause.expires_after(replica->budget.wait_for(4096, now));
          pipe.pause.async_wait([this, replica, &pipe, run](boost::system::error_code pause_ec) {
            if (!pause_ec && replica->run == run) read_output(replica, pipe);
          });
          return;
        }
        char buffer[64 * 1024];
        ssize_t n = read(pipe.fd->native_handle(), buffer, std::min(sizeof buffer, allowed));
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          read_output(replica, pipe);
          return;
        }
        std::vector<std::string> lines;
        if (n <= 0) {
          if (auto rest = pipe.splitter.take_rest(); !rest.empty()) lines.push_back(rest);
          emit_lines(replica, pipe, lines);
          pipe.fd.reset();
          return;
        }
        replica->budget.consume(static_cast<std::size_t>(n));
        pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
        emit_lines(replica, pipe, lines);
        read_output(replica, pipe);
      });
}

void Supervisor::drain_output(const ReplicaPtr& replica, OutputPipe& pipe) {
  if (!pipe.fd) return;
  std::vector<std::string> lines;
  char buffer[64 * 1024];
  // What the replica wrote before it died; bounded, as grandchildren may still hold the pipe.
  for (int i = 0; i < 16; ++i) {
    ssize_t n = read(pipe.fd->native_handle(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
  }
  if (auto rest = pipe.splitter.take_rest(); !rest.empty()) lines.push_back(rest);
  emit_lines(replica, pipe, lines);
}

void Supervisor::emit_lines(const ReplicaPtr& replica, OutputPipe& pipe,
                            std::vector<std::string>& lines) {
  if (lines.empty()) return;
  bool to_terminal = terminal_echo();
  if (logs_) {
    const long pid = replica->pid > 0 ? replica->pid : replica->exited_pid;
    logs_->replica_lines({spec_.name, replica->service, replica->id, pid}, pipe.is_stderr,
                         lines);
    to_terminal = logs_->echo_to_terminal();  // not twice into the journal, not when detached
  }
  FILE* stream = pipe.is_stderr ? stderr : stdout;
  std::string text;
  for (auto& line : lines) {
    text += replica->id;
    text += " | ";
    text += line;
    text += '\n';
    if (pipe.is_stderr) {
      replica->stderr_tail.push_back(std::move(line));
      if (replica->stderr_tail.size() > kStderrTail) replica->stderr_tail.pop_front();
    }
  }
  if (!to_terminal) return;
  std::fwrite(text.data(), 1, text.size(), stream);
  std::fflush(stream);
}

}  // namespace deployctl
