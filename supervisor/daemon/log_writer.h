// Writes replica and pre-start output to per-service files (and, under systemd, to the
// journal) on a thread of its own, so a slow or full disk never blocks the event loop.
// See docs/logs.md.
//
// Thread-safety: every public method may be called from any one thread (the event loop); the
// writer thread only touches the queue under its lock. Failures (unwritable directory, full
// disk) are logged once as a warning and retried at most every kRetryAfter; output keeps going
// to the terminal. Must not exist across a fork() (its thread would not).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "log_file.h"
#include "log_format.h"

namespace deployctl {

struct LogSettings {
  std::string dir;  // where S.log files go
  LogLimits limits;
  bool journal = false;  // also send replica lines to the journal (stderr is the journal)
};

class LogWriter {
 public:
  static constexpr std::size_t kMaxQueued = 16 * 1024 * 1024;  // bytes; beyond: lines dropped
  static constexpr std::chrono::seconds kRetryAfter{5};

  explicit LogWriter(LogSettings settings);
  // Writes everything still queued, then stops the thread.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Lines of one replica's stdout or stderr, as read (without '\n'): to SERVICE.log.
  void replica_lines(const logs::JournalSource& source, bool is_stderr,
                     const std::vector<std::string>& lines);
  // One line of a pre-start step: to pre_start.log (never to the journal: under systemd the
  // terminal output already goes there).
  void pre_start_line(const std::string& step, const std::string& line, bool is_stderr);
  // New size limits (a reload); the directory stays.
  void set_limits(LogLimits limits);
  bool journal() const { return settings_.journal; }
  // Whether replica lines are also printed (`web.2 | ...`): not to the journal, which has them
  // already, nor once detached (see set_terminal_echo).
  bool echo_to_terminal() const;
  const std::string& dir() const { return settings_.dir; }

 private:
  struct Entry {
    std::string base;   // file base name
    std::string text;   // formatted lines
    std::size_t lines = 0;
    std::vector<std::vector<std::string>> journal;  // fields of each line, if journaled
  };
  struct FileState;
  void push(Entry entry);
  void run();
  void write(Entry& entry);
  void send_to_journal(const Entry& entry);

  const LogSettings settings_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Entry> queue_;
  std::size_t queued_bytes_ = 0;
  std::map<std::string, std::size_t> dropped_;  // lines dropped per base, not yet reported
  LogLimits limits_;
  bool limits_changed_ = false;
  bool stopping_ = false;
  // Writer thread only:
  std::map<std::string, std::unique_ptr<FileState>> files_;
  bool journal_failed_ = false;
  std::thread thread_;
};

// Whether this process prints replica and pre-start output to its stdout/stderr: yes in the
// foreground (`up`), no once detached (`up -d`: stderr is the supervisor's own log, which is
// no place for replica output). Process-wide, as stdout and stderr are. Default: yes.
void set_terminal_echo(bool on);
bool terminal_echo();

// The journal check for this process: $JOURNAL_STREAM names stderr's device and inode.
bool stderr_is_journal();

}  // namespace deployctl
