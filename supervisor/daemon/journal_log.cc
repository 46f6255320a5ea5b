#include "journal_log.h"

#include <spdlog/pattern_formatter.h>

#include <memory>

namespace deployctl {
namespace {

// "%*": the syslog priority digit of the message's level.
class PriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm&,
              spdlog::memory_buf_t& out) override {
    out.push_back(static_cast<char>('0' + journal_priority(message.level)));
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

// "%~": the message text on one line.
class OneLineFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm&,
              spdlog::memory_buf_t& out) override {
    for (char c : message.payload) out.push_back(c == '\n' ? ' ' : c);
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<OneLineFlag>();
  }
};

}  // namespace

int journal_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return 2;  // LOG_CRIT
    case spdlog::level::err:
      return 3;  // LOG_ERR
    case spdlog::level::warn:
      return 4;  // LOG_WARNING
    case spdlog::level::info:
      return 6;  // LOG_INFO
    default:
      return 7;  // LOG_DEBUG: trace, debug
  }
}

void use_journal_format(spdlog::logger& logger) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PriorityFlag>('*').add_flag<OneLineFlag>('~').set_pattern("<%*>%~");
  logger.set_formatter(std::move(formatter));
}

}  // namespace deployctl
