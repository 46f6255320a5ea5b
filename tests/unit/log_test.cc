// The log files: line format, selectors, the rotation plan and journal fields (pure), then the
// rotating file and the reader on real files in a temporary directory.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "log_command.h"
#include "paths.h"
#include "log_file.h"
#include "log_format.h"
#include "log_reader.h"
#include "temp_dir.h"

using namespace deployctl;
using deployctl::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string numbered(int from, int to) {  // "line 000N" lines (all one size) for N in [from, to)
  std::string text;
  for (int n = from; n < to; ++n) {
    char number[32];
    std::snprintf(number, sizeof number, "line %04d", n);
    text += logs::format_line("T", "web.0", false, number);
  }
  return text;
}

}  // namespace

TEST_CASE("logs: a line carries time, source and stream, and parses back") {
  const auto at = std::chrono::system_clock::time_point(std::chrono::milliseconds(1735787045678));
  CHECK(logs::format_time(at) == "2025-01-02T03:04:05.678Z");
  const std::string line = logs::format_line("2025-01-02T03:04:05.678Z", "web.2", true, "a | b");
  CHECK(line == "2025-01-02T03:04:05.678Z web.2 err | a | b\n");
  auto parsed = logs::parse_line(line);
  REQUIRE(parsed);
  CHECK(parsed->source == "web.2");
  CHECK(parsed->stream == "err");
  CHECK(parsed->text == "a | b");
  CHECK(logs::parse_line("T web.2 out | ")->text == "");
  CHECK_FALSE(logs::parse_line("cut off by a full di"));
  CHECK_FALSE(logs::parse_line("T web.2 xyz | text"));
}

TEST_CASE("logs: selectors name a service, a replica or the pre-start steps") {
  std::string error;
  auto web = logs::parse_selector("web", &error);
  REQUIRE(web);
  CHECK(web->base == "web");
  CHECK(web->source.empty());
  auto one = logs::parse_selector("web.1", &error);
  REQUIRE(one);
  CHECK(one->base == "web");
  CHECK(logs::selects(*one, "T web.1 out | x\n"));
  CHECK_FALSE(logs::selects(*one, "T web.10 out | x\n"));
  CHECK_FALSE(logs::selects(*one, "T web.2 out | x\n"));
  auto step = logs::parse_selector("pre_start.migrate", &error);
  REQUIRE(step);
  CHECK(step->base == "pre_start");
  CHECK(logs::parse_selector("", &error)->base.empty());
  CHECK_FALSE(logs::parse_selector("web.x", &error));
  CHECK(error.find("SERVICE.N") != std::string::npos);
  CHECK_FALSE(logs::parse_selector("Web", &error));
  CHECK_FALSE(logs::parse_selector("web.", &error));
}

TEST_CASE("logs: rotation renames oldest first, dropping the one past keep") {
  auto renames = logs::rotation_renames("web", 3);
  REQUIRE(renames.size() == 3);
  CHECK(renames[0].from == "web.log.2");
  CHECK(renames[0].to == "web.log.3");
  CHECK(renames[2].from == "web.log");
  CHECK(renames[2].to == "web.log.1");
  CHECK(logs::needs_rotation(90, 20, 100));
  CHECK_FALSE(logs::needs_rotation(80, 20, 100));
  CHECK_FALSE(logs::needs_rotation(0, 500, 100));  // an overlong line goes alone into a file
}

TEST_CASE("logs: journal fields name deployment, service, replica and pid") {
  auto fields = logs::journal_fields({"shop", "web", "web.2", 4242}, true, "boom");
  auto has = [&](const std::string& field) {
    return std::find(fields.begin(), fields.end(), field) != fields.end();
  };
  CHECK(has("MESSAGE=boom"));
  CHECK(has("PRIORITY=5"));
  CHECK(has("SYSLOG_IDENTIFIER=web"));
  CHECK(has("DEPLOYCTL_DEPLOYMENT=shop"));
  CHECK(has("DEPLOYCTL_SERVICE=web"));
  CHECK(has("DEPLOYCTL_REPLICA=web.2"));
  CHECK(has("DEPLOYCTL_REPLICA_PID=4242"));
  CHECK(has("DEPLOYCTL_STREAM=stderr"));
  CHECK(logs::journal_fields({"shop", "web", "web.2", 1}, false, "x")[1] == "PRIORITY=6");
}

TEST_CASE("logs: the journal is recognised by stderr's device and inode only") {
  CHECK(logs::is_journal_stream("8:1234", 8, 1234));
  CHECK_FALSE(logs::is_journal_stream("8:1234", 8, 1235));
  CHECK_FALSE(logs::is_journal_stream("8:1234x", 8, 1234));
  CHECK_FALSE(logs::is_journal_stream("", 0, 0));
}

TEST_CASE("logs: the log directory's precedence") {
  LogDirInputs in{"", "", false, false, "shop", "/run/user/1000/deployctl/shop"};
  CHECK(resolve_log_dir(in) == "/run/user/1000/deployctl/shop/logs");
  in.root = true;
  CHECK(resolve_log_dir(in) == "/var/log/deployctl/shop");
  in.runtime_dir_overridden = true;
  CHECK(resolve_log_dir(in) == "/run/user/1000/deployctl/shop/logs");
  in.spec_dir = "/srv/shop/logs";
  CHECK(resolve_log_dir(in) == "/srv/shop/logs");
  in.log_dir_option = "/tmp/l";
  CHECK(resolve_log_dir(in) == "/tmp/l/shop");
}

TEST_CASE("logs: a rotating file keeps every line, in order, across keep+1 files") {
  TempDir dir;
  const std::string one = numbered(0, 1);
  RotatingFile file(dir.path.string() + "/sub", "web", {one.size() * 10, 3});
  for (int n = 0; n < 40; n += 5) CHECK(file.append(numbered(n, n + 5)).error.empty());
  // 40 lines, 10 per file: web.log.3 (0-9) .. web.log (30-39), no line split or repeated.
  CHECK(read_text(dir.path.string() + "/sub/web.log.3") == numbered(0, 10));
  CHECK(read_text(dir.path.string() + "/sub/web.log.1") == numbered(20, 30));
  CHECK(read_text(dir.path.string() + "/sub/web.log") == numbered(30, 40));
  CHECK(file.append(numbered(40, 41)).error.empty());  // rotates: the oldest is dropped
  CHECK(read_text(dir.path.string() + "/sub/web.log.3") == numbered(10, 20));
  CHECK(read_text(dir.path.string() + "/sub/web.log") == numbered(40, 41));
  CHECK_FALSE(fs::exists(dir.path.string() + "/sub/web.log.4"));
}

TEST_CASE("logs: an unwritable place is an error value, not a crash") {
  TempDir dir;
  std::ofstream(dir.path.string() + "/file") << "x";
  RotatingFile file(dir.path.string() + "/file/logs", "web", {});
  auto result = file.append(numbered(0, 3));
  CHECK(result.lost == 3);
  CHECK(result.error.find("cannot create " + dir.path.string() + "/file/logs") == 0);
}

TEST_CASE("logs: the reader's tail spans rotated files; poll follows a rotation") {
  TempDir dir;
  const std::string one = numbered(0, 1);
  RotatingFile file(dir.path.string(), "web", {one.size() * 10, 5});
  CHECK(file.append(numbered(0, 25)).error.empty());
  LogReader reader(dir.path.string(), "web");
  REQUIRE(reader.open());
  logs::Selector all;
  auto tail = reader.tail(12, all);
  REQUIRE(tail.size() == 12);
  CHECK(tail.front() == numbered(13, 14));
  CHECK(tail.back() == numbered(24, 25));
  std::string warning;
  CHECK(reader.poll(all, &warning).empty());
  CHECK(file.append(numbered(25, 47)).error.empty());  // two more rotations
  auto more = reader.poll(all, &warning);
  CHECK(warning.empty());
  std::string joined;
  for (const auto& line : more) joined += line;
  CHECK(joined == numbered(25, 47));
  CHECK(LogReader::bases_in(dir.path.string()) == std::vector<std::string>{"web"});
}
