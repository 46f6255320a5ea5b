#include "pre_start.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>

#include "clock.h"
#include "control_protocol.h"
#include "log_writer.h"
#include "load.h"
#include "output.h"
#include "process.h"
#include "replica_machine.h"

extern char** environ;

namespace deployctl {

namespace asio = boost::asio;

namespace {

// Time for the killed members of a step's group to close their ends of its pipes.
constexpr Duration kMinDrainGrace{100};

// The supervisor's environment minus what belongs to it or to replicas, then the step's env.
std::vector<std::string> step_environment(const PreStartStep& step) {
  std::vector<std::string> env = inherited_environment();
  for (const auto& [key, value] : step.env) {
    set_variable(env, key, expand_placeholders(value, 0, std::nullopt));
  }
  return env;
}


std::string describe_failure(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    return "killed by " + describe_exit(std::nullopt, WTERMSIG(wait_status));
  }
  return "exited with " + describe_exit(WEXITSTATUS(wait_status), std::nullopt);
}

bool succeeded(int wait_status) { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

long long ms_since(TimePoint start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

}  // namespace

class PreStartRunner::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, ChildWatcher& children, std::vector<PreStartStep> steps,
       OnLine on_line, Done done)
      : io_(io),
        children_(children),
        steps_(std::move(steps)),
        on_line_(std::move(on_line)),
        done_(std::move(done)),
        timer_(io) {}

  void start();
  void cancel();
  void abandon();

 private:
  struct Pipe {
    explicit Pipe(bool err) : is_stderr(err) {}
    std::unique_ptr<asio::posix::stream_descriptor> fd;
    LineSplitter splitter;
    bool is_stderr;
  };
  // idle: no step in flight; running: the step's process is alive; draining: it has exited and
  // its pipes are read to EOF; done: `done` has been scheduled (or the runner abandoned).
  enum class Phase { idle, running, draining, done };
  using Action = void (Impl::*)();

  const PreStartStep& step() const { return steps_[index_]; }
  std::string label() const { return "pre_start step '" + step().name + "'"; }

  void run_next();
  void start_step();
  void on_exit(int wait_status);
  void on_deadline();
  void on_kill_grace_over();
  void on_drain_grace_over();
  void finish_step();
  void fail(const std::string& message, const char* result = "failed");
  void record(const char* result);
  void finish(PreStartResult result);

  void read(Pipe& pipe);
  void on_readable(Pipe& pipe);
  void drain(Pipe& pipe);
  void close_pipe(Pipe& pipe);
  void emit(const Pipe& pipe, std::vector<std::string>& lines);

  void arm_timer(Duration after, Action action);
  void disarm_timer();

  asio::io_context& io_;
  ChildWatcher& children_;
  const std::vector<PreStartStep> steps_;
  OnLine on_line_;
  Done done_;
  asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;

  bool started_ = false;
  bool cancelled_ = false;
  Phase phase_ = Phase::idle;
  std::size_t index_ = 0;  // the step in flight, or the next one to run
  std::uint64_t run_ = 0;  // incremented per step: handlers of an older step are stale
  pid_t pid_ = -1;         // the running step's pid (and process group); -1 once reaped
  std::optional<int> wait_status_;
  bool timed_out_ = false;
  TimePoint started_at_{};
  TimePoint deadline_{};
  Pipe out_{false}, err_{true};
  std::deque<std::string> tail_;
  std::vector<PreStartOutcome> outcomes_;
};

// ---- lifecycle -------------------------------------------------------------------------------

void PreStartRunner::Impl::start() {
  if (started_ || phase_ != Phase::idle) return;
  started_ = true;
  asio::post(io_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->run_next();
  });
}

void PreStartRunner::Impl::cancel() {
  if (phase_ == Phase::done) return;
  cancelled_ = true;
  switch (phase_) {
    case Phase::idle:
      finish({false, "", "pre_start was cancelled before its steps ran", {}, outcomes_});
      break;
    case Phase::running:
      spdlog::warn("{} cancelled; killing its process group", label());
      signal_group(pid_, SIGKILL);  // on_exit finishes the step
      break;
    case Phase::draining:
      drain(out_);
      drain(err_);
      finish_step();
      break;
    case Phase::done:
      break;
  }
}

void PreStartRunner::Impl::abandon() {
  if (phase_ == Phase::running) signal_group(pid_, SIGKILL);
  phase_ = Phase::done;
  ++run_;
  disarm_timer();
}

void PreStartRunner::Impl::run_next() {
  if (phase_ != Phase::idle) return;
  if (index_ == steps_.size()) {
    finish({.steps = outcomes_});
    return;
  }
  start_step();
}

void PreStartRunner::Impl::start_step() {
  const PreStartStep& current = step();
  started_at_ = Clock::now();
  tail_.clear();
  SpawnRequest request;
  for (const auto& arg : current.command) {
    request.argv.push_back(expand_placeholders(arg, 0, std::nullopt));
  }
  if (request.argv.empty()) {
    fail(label() + " failed: it has no command");
    return;
  }
  request.env = step_environment(current);
  request.argv[0] = resolve_command(request.argv[0], path_variable(request.env));
  request.working_dir = current.working_dir;

  int out[2] = {-1, -1}, err[2] = {-1, -1};
  SpawnResult result;
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.message = std::string("cannot create its output pipes: ") + std::strerror(errno);
  } else {
    request.stdout_fd = out[1];
    request.stderr_fd = err[1];
    result = spawn_process(request);
  }
  for (int fd : {out[1], err[1]}) {
    if (fd >= 0) close(fd);
  }
  if (result.pid < 0) {
    for (int fd : {out[0], err[0]}) {
      if (fd >= 0) close(fd);
    }
    fail(label() + " failed: " + result.message);
    return;
  }

  ++run_;
  phase_ = Phase::running;
  pid_ = result.pid;
  wait_status_.reset();
  timed_out_ = false;
  deadline_ = started_at_ + current.timeout;
  out_.fd = std::make_unique<asio::posix::stream_descriptor>(io_, out[0]);
  err_.fd = std::make_unique<asio::posix::stream_descriptor>(io_, err[0]);
  for (Pipe* pipe : {&out_, &err_}) {
    boost::system::error_code ignored;
    pipe->fd->non_blocking(true, ignored);
  }
  children_.watch(
      pid_,
      [weak = weak_from_this(), run = run_](int wait_status) {
        auto self = weak.lock();
        if (self && self->run_ == run) self->on_exit(wait_status);
      },
      /*kill_group=*/true);
  spdlog::info("{} started (pid {})", label(), pid_);
  read(out_);
  read(err_);
  arm_timer(current.timeout, &Impl::on_deadline);
}

// ---- the running step: exit, timeout, drain ----------------------------------------------------

void PreStartRunner::Impl::on_exit(int wait_status) {
  wait_status_ = wait_status;
  pid_ = -1;
  phase_ = Phase::draining;
  disarm_timer();
  if (!out_.fd && !err_.fd) {
    finish_step();
    return;
  }
  // The rest of the group has just been SIGKILLed (by ChildWatcher); after it is torn down only
  // a process that left the group can keep a pipe open. Wait for EOF briefly.
  auto grace = std::chrono::duration_cast<Duration>(deadline_ - Clock::now());
  if (cancelled_ || timed_out_) grace = Duration{0};
  arm_timer(std::clamp(grace, kMinDrainGrace, kPreStartDrainGrace), &Impl::on_drain_grace_over);
}

void PreStartRunner::Impl::on_deadline() {
  timed_out_ = true;
  spdlog::warn("{} timed out after {}ms; sending SIGTERM to its process group", label(),
               to_ms(step().timeout));
  signal_group(pid_, SIGTERM);
  signal_group(pid_, SIGCONT);
  arm_timer(kPreStartKillGrace, &Impl::on_kill_grace_over);
}

void PreStartRunner::Impl::on_kill_grace_over() {
  spdlog::warn("{} still running {}ms after SIGTERM; sending SIGKILL", label(),
               to_ms(kPreStartKillGrace));
  signal_group(pid_, SIGKILL);
}

void PreStartRunner::Impl::on_drain_grace_over() {
  if (out_.fd || err_.fd) {
    spdlog::warn("{} exited, but a process outside its group still holds its output open; "
                 "no longer reading it",
                 label());
  }
  drain(out_);
  drain(err_);
  finish_step();
}

void PreStartRunner::Impl::finish_step() {
  disarm_timer();
  ++run_;
  out_.fd.reset();
  err_.fd.reset();
  phase_ = Phase::idle;
  const int status = wait_status_.value_or(0);
  if (cancelled_) {
    fail(label() + " was cancelled; its process group was killed", "cancelled");
  } else if (timed_out_) {
    fail(label() + " timed out after " + std::to_string(to_ms(step().timeout)) +
             "ms; its process group was killed",
         "timeout");
  } else if (!succeeded(status)) {
    fail(label() + " failed: " + describe_failure(status));
  } else {
    spdlog::info("{} succeeded in {}ms", label(), ms_since(started_at_));
    record("ok");
    ++index_;
    run_next();
  }
}

void PreStartRunner::Impl::record(const char* result) {
  outcomes_.push_back(
      {step().name, result, std::chrono::duration<double>(Clock::now() - started_at_).count()});
}

void PreStartRunner::Impl::fail(const std::string& message, const char* result) {
  spdlog::error("{} (after {}ms)", message, ms_since(started_at_));
  record(result);
  finish({false, step().name, message, {tail_.begin(), tail_.end()}, outcomes_});
}

void PreStartRunner::Impl::finish(PreStartResult result) {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  asio::post(io_, [weak = weak_from_this(), result = std::move(result)]() mutable {
    auto self = weak.lock();
    if (!self) return;
    Done done = std::move(self->done_);  // may destroy the runner; self keeps this alive
    if (done) done(std::move(result));
  });
}

// ---- output ----------------------------------------------------------------------------------

void PreStartRunner::Impl::read(Pipe& pipe) {
  if (!pipe.fd) return;
  pipe.fd->async_wait(asio::posix::stream_descriptor::wait_read,
                      [weak = weak_from_this(), &pipe, run = run_](boost::system::error_code ec) {
                        auto self = weak.lock();
                        if (ec || !self || self->run_ != run || !pipe.fd) return;
                        self->on_readable(pipe);
                      });
}

void PreStartRunner::Impl::on_readable(Pipe& pipe) {
  char buffer[64 * 1024];
  ssize_t n = ::read(pipe.fd->native_handle(), buffer, sizeof buffer);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    read(pipe);
    return;
  }
  if (n > 0) {
    std::vector<std::string> lines;
    pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
    emit(pipe, lines);
    read(pipe);
    return;
  }
  close_pipe(pipe);
  if (phase_ == Phase::draining && !out_.fd && !err_.fd) finish_step();
}

// Reads what is already in the pipe without waiting, then closes it.
void PreStartRunner::Impl::drain(Pipe& pipe) {
  if (!pipe.fd) return;
  std::vector<std::string> lines;
  char buffer[64 * 1024];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = ::read(pipe.fd->native_handle(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pipe.splitter.feed(std::string_view(buffer, static_cast<std::size_t>(n)), &lines);
  }
  emit(pipe, lines);
  close_pipe(pipe);
}

void PreStartRunner::Impl::close_pipe(Pipe& pipe) {
  std::vector<std::string> lines;
  if (auto rest = pipe.splitter.take_rest(); !rest.empty()) lines.push_back(std::move(rest));
  emit(pipe, lines);
  pipe.fd.reset();
}

void PreStartRunner::Impl::emit(const Pipe& pipe, std::vector<std::string>& lines) {
  for (auto& line : lines) {
    if (on_line_ && phase_ != Phase::done) on_line_(step().name, line, pipe.is_stderr);
    tail_.push_back(std::move(line));
    if (tail_.size() > kPreStartTailLines) tail_.pop_front();
  }
}

// ---- timer -----------------------------------------------------------------------------------

void PreStartRunner::Impl::arm_timer(Duration after, Action action) {
  const auto generation = ++timer_generation_;
  timer_.expires_after(after);
  timer_.async_wait([weak = weak_from_this(), generation, action](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->timer_generation_ != generation) return;
    ((*self).*action)();
  });
}

void PreStartRunner::Impl::disarm_timer() {
  ++timer_generation_;
  timer_.cancel();
}

// ---- the public face -------------------------------------------------------------------------

PreStartRunner::PreStartRunner(asio::io_context& io, ChildWatcher& children,
                               std::vector<PreStartStep> steps, OnLine on_line, Done done)
    : impl_(std::make_shared<Impl>(io, children, std::move(steps), std::move(on_line),
                                   std::move(done))) {}

PreStartRunner::~PreStartRunner() { impl_->abandon(); }

void PreStartRunner::start() { impl_->start(); }

void PreStartRunner::cancel() { impl_->cancel(); }

void print_pre_start_line(const std::string& step, const std::string& line, bool is_stderr) {
  if (!terminal_echo()) return;  // detached: pre_start.log has it
  FILE* stream = is_stderr ? stderr : stdout;
  std::fprintf(stream, "pre_start.%s | %s\n", step.c_str(), line.c_str());
  std::fflush(stream);
}

}  // namespace deployctl
