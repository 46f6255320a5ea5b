#include "journal_log.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

namespace deployctl {

TEST_CASE("journal log: each level maps to its syslog priority") {
  CHECK(journal_priority(spdlog::level::critical) == 2);
  CHECK(journal_priority(spdlog::level::err) == 3);
  CHECK(journal_priority(spdlog::level::warn) == 4);
  CHECK(journal_priority(spdlog::level::info) == 6);
  CHECK(journal_priority(spdlog::level::debug) == 7);
  CHECK(journal_priority(spdlog::level::trace) == 7);
}

TEST_CASE("journal log: a priority prefix, no time or level text, one line per message") {
  std::ostringstream out;
  spdlog::logger logger("journal-test", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger.set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  use_journal_format(logger);
  logger.info("web.0 ready");
  logger.warn("first\nsecond");
  logger.error("exit 3");
  CHECK(out.str() == "<6>web.0 ready\n<4>first second\n<3>exit 3\n");
}

}  // namespace deployctl
