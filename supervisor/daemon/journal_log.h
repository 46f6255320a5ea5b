// The supervisor's own messages when its stderr is the journal (under systemd): no timestamp
// or level text of ours (the journal records both), the level as a `<N>` syslog priority
// prefix, which journald turns into PRIORITY= (SyslogLevelPrefix=, on by default).
//
// Why a prefix on stderr rather than sd_journal_send(PRIORITY=...): the stream keeps the order
// of everything written to fd 2 (the C++ runtime's last words included), journald attributes
// each line to the unit through the stream itself (no race with a process that exits right
// after logging), and the stream survives the upgrade's execve as fd 2 does. Replica lines keep
// going through sd_journal_send with their fields (log_writer.h).
#pragma once

#include <spdlog/common.h>
#include <spdlog/logger.h>

namespace deployctl {

// The syslog priority (0 emerg .. 7 debug) of an spdlog level.
int journal_priority(spdlog::level::level_enum level);

// Formats `logger`'s messages as "<N>message" (one line each: a message's embedded newlines
// become spaces, so no line reaches the journal without its priority).
void use_journal_format(spdlog::logger& logger);

}  // namespace deployctl
