#include "log_writer.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <spdlog/spdlog.h>
#include <systemd/sd-journal.h>

namespace deployctl {

struct LogWriter::FileState {
  FileState(const std::string& dir, const std::string& base, LogLimits limits)
      : file(dir, base, limits) {}
  RotatingFile file;
  bool failing = false;
  std::size_t lost = 0;  // since the failure began
  std::string reason;    // of the last failure, for the marker line
  std::chrono::steady_clock::time_point retry_at{};
};

LogWriter::LogWriter(LogSettings settings)
    : settings_(std::move(settings)), limits_(settings_.limits) {
  // The thread takes no signals: they stay with the event loop's thread.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

LogWriter::~LogWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void LogWriter::push(Entry entry) {
  {
    std::lock_guard lock(mutex_);
    if (queued_bytes_ + entry.text.size() > kMaxQueued) {
      dropped_[entry.base] += entry.lines;
      return;
    }
    queued_bytes_ += entry.text.size();
    queue_.push_back(std::move(entry));
  }
  wake_.notify_one();
}

void LogWriter::replica_lines(const logs::JournalSource& source, bool is_stderr,
                              const std::vector<std::string>& lines) {
  if (lines.empty()) return;
  Entry entry{source.service, {}, lines.size(), {}};
  const std::string time = logs::format_time(std::chrono::system_clock::now());
  for (const auto& line : lines) {
    entry.text += logs::format_line(time, source.replica, is_stderr, line);
    if (settings_.journal) entry.journal.push_back(logs::journal_fields(source, is_stderr, line));
  }
  push(std::move(entry));
}

void LogWriter::pre_start_line(const std::string& step, const std::string& line,
                               bool is_stderr) {
  const std::string time = logs::format_time(std::chrono::system_clock::now());
  push({"pre_start", logs::format_line(time, "pre_start." + step, is_stderr, line), 1, {}});
}

void LogWriter::set_limits(LogLimits limits) {
  std::lock_guard lock(mutex_);
  limits_ = limits;
  limits_changed_ = true;
}

void LogWriter::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty() || !dropped_.empty(); });
    std::vector<Entry> batch;
    batch.swap(queue_);
    queued_bytes_ = 0;
    auto dropped = std::exchange(dropped_, {});
    const bool stop = stopping_;
    std::optional<LogLimits> limits;
    if (std::exchange(limits_changed_, false)) limits = limits_;
    lock.unlock();
    if (limits) {
      for (auto& [base, state] : files_) state->file.set_limits(*limits);
    }
    for (auto& [base, count] : dropped) {
      spdlog::warn("{} lines of {} were not logged: the log writer fell behind", count, base);
      const std::string time = logs::format_time(std::chrono::system_clock::now());
      Entry note{base,
                 logs::format_line(time, "deployctl", true,
                                   std::to_string(count) + " lines dropped: the log writer "
                                                           "fell behind"),
                 1,
                 {}};
      write(note);
    }
    for (auto& entry : batch) {
      write(entry);
      if (!entry.journal.empty()) send_to_journal(entry);
    }
    lock.lock();
    if (stop && queue_.empty()) return;
  }
}

void LogWriter::write(Entry& entry) {
  auto& state = files_[entry.base];
  if (!state) state = std::make_unique<FileState>(settings_.dir, entry.base, limits_);
  const auto now = std::chrono::steady_clock::now();
  if (state->failing && now < state->retry_at) {
    state->lost += entry.lines;
    return;
  }
  // Resuming after a failure: the gap is marked in the file itself, before the new lines.
  std::string marker;
  if (state->failing && state->lost > 0) {
    marker = logs::format_line(logs::format_time(std::chrono::system_clock::now()), "deployctl",
                               true, std::to_string(state->lost) + " lines lost: " + state->reason);
  }
  RotatingFile::Result result = state->file.append(marker.empty() ? entry.text : marker + entry.text);
  if (result.lost == 0) {
    if (state->failing) {
      spdlog::info("writing {} again ({} lines could not be written; marked in the file)",
                   state->file.path(), state->lost);
    } else if (!result.error.empty()) {
      spdlog::warn("{}", result.error);
    }
    state->failing = false;
    state->lost = 0;
    return;
  }
  if (!state->failing) {
    spdlog::warn("{}; {} output is not logged to a file until this is fixed (retried every "
                 "{}s); {}",
                 result.error, entry.base, kRetryAfter.count(),
                 echo_to_terminal() ? "it still goes to the terminal"
                                    : "the file will say how many lines were lost");
  }
  const bool marker_written = !marker.empty() && result.lost <= entry.lines;
  if (marker_written) state->lost = 0;  // that gap is marked; what follows is a new one
  state->failing = true;
  state->reason = result.error;
  state->lost += marker.empty() || marker_written ? result.lost : entry.lines;
  state->retry_at = now + kRetryAfter;
}

void LogWriter::send_to_journal(const Entry& entry) {
  for (const auto& fields : entry.journal) {
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (const auto& field : fields) {
      iov.push_back({const_cast<char*>(field.data()), field.size()});
    }
    int error = sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    if (error < 0 && !journal_failed_) {
      journal_failed_ = true;
      spdlog::warn("cannot send replica output to the journal: {}", std::strerror(-error));
    }
  }
}

namespace {
std::atomic<bool> terminal_echo_on{true};
}  // namespace

void set_terminal_echo(bool on) { terminal_echo_on = on; }
bool terminal_echo() { return terminal_echo_on; }
bool LogWriter::echo_to_terminal() const { return !settings_.journal && terminal_echo(); }

bool stderr_is_journal() {
  const char* variable = std::getenv("JOURNAL_STREAM");
  struct stat info {};
  if (!variable || fstat(STDERR_FILENO, &info) != 0) return false;
  return logs::is_journal_stream(variable, info.st_dev, info.st_ino);
}

}  // namespace deployctl
