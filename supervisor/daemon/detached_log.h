// The detached supervisor's own log, STATE/supervisor.log (`up -d`): only the supervisor's
// messages (replica output goes to the per-service files, never here), one write() per
// message so that no line is ever split, and capped: past kDetachedLogMax it is renamed to
// supervisor.log.1 (replacing the previous one) and a new file is started, so the state
// directory (RAM-backed /run) holds at most about twice the cap. See docs/logs.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace deployctl {

inline constexpr std::uint64_t kDetachedLogMax = 1024 * 1024;

// Rotates `path` if it is already over `max_size` (a log appended across runs), opens it for
// appending and makes it this process's stderr (fd 2), so that whatever else writes to stderr
// (the C++ runtime's last words) lands there too. stdout becomes /dev/null. False if the file
// cannot be opened (stderr is then left alone).
bool redirect_to_detached_log(const std::string& path, std::uint64_t max_size = kDetachedLogMax);

// A logger that writes to fd 2 (set up by redirect_to_detached_log) and rotates `path` as
// above. Thread-safe (the log writer's thread logs too).
std::shared_ptr<spdlog::logger> make_detached_logger(const std::string& name,
                                                     const std::string& path,
                                                     std::uint64_t max_size = kDetachedLogMax);

}  // namespace deployctl
