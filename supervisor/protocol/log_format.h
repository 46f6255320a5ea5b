// The per-service log files' line format, the `logs` command's filter, the rotation plan and
// the journal fields of a replica line. Pure: no I/O, time passed in. See docs/logs.md.
//
// One line per output line: `<UTC time> <source> <stream> | <text>`, e.g.
//   2025-01-02T03:04:05.678Z web.2 err | Traceback (most recent call last):
// source is a replica id (`web.2`) or `pre_start.STEP`; stream is `out` or `err`.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deployctl::logs {

// The file (without directory) of a service's log, or of the pre-start steps' (base "pre_start").
std::string file_name(std::string_view base);
// `base`.log.`n`: n = 1 is the newest rotated file; n = 0 is the live file itself.
std::string rotated_name(std::string_view base, int n);

// "2025-01-02T03:04:05.678Z" (UTC, milliseconds; fixed width, so text order is time order).
std::string format_time(std::chrono::system_clock::time_point at);

// One log line, '\n' included.
std::string format_line(std::string_view time, std::string_view source, bool is_stderr,
                        std::string_view text);

struct ParsedLine {
  std::string_view time;
  std::string_view source;
  std::string_view stream;  // "out" or "err"
  std::string_view text;
};
// nullopt for a line that is not in the format (e.g. cut by a full disk).
std::optional<ParsedLine> parse_line(std::string_view line);

// Which lines `logs SELECTOR` shows: "web" (every replica of web), "web.2" (one replica),
// "pre_start" (every step), "pre_start.migrate" (one step), or "" (everything).
struct Selector {
  std::string base;    // the file's base name: service name or "pre_start"; empty: all files
  std::string source;  // exact source to keep; empty: every line of the file
};
// nullopt (with *error) for text that cannot name a service, replica or step.
std::optional<Selector> parse_selector(std::string_view text, std::string* error);
bool selects(const Selector& selector, std::string_view line);

// Rotation: before appending `incoming` bytes to a file of `size` bytes, rotate if it would go
// over max_size. A non-empty file is never left empty-handed: a line longer than max_size goes
// alone into a fresh file; lines are never split across files.
bool needs_rotation(std::uint64_t size, std::uint64_t incoming, std::uint64_t max_size);

struct Rename {
  std::string from, to;
};
// The renames of one rotation, in the order to perform them: base.log.(keep-1) -> base.log.keep
// (replacing, i.e. dropping, the oldest), ..., base.log -> base.log.1. Names without directory.
std::vector<Rename> rotation_renames(std::string_view base, int keep);

// The journal fields of one replica line (sd_journal_send's "KEY=value" strings).
struct JournalSource {
  std::string deployment, service, replica;  // replica: its id, e.g. "web.2"
  long pid = 0;
};
inline constexpr int kPriorityStdout = 6;  // LOG_INFO
inline constexpr int kPriorityStderr = 5;  // LOG_NOTICE: apart from stdout, not flagged as errors
std::vector<std::string> journal_fields(const JournalSource& source, bool is_stderr,
                                        std::string_view text);

// Whether stderr is connected to the journal: $JOURNAL_STREAM ("DEV:INODE") names the device
// and inode of stderr. Pure: both are passed in.
bool is_journal_stream(std::string_view journal_stream_variable, unsigned long long dev,
                       unsigned long long inode);

}  // namespace deployctl::logs
