// The detached supervisor's own log (daemon/detached_log.h) on real files: fd 2 of this test
// process is redirected for the duration of each case and put back.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "detached_log.h"

using namespace deployctl;
namespace fs = std::filesystem;

namespace {

struct SavedStdio {
  int err = dup(STDERR_FILENO), out = dup(STDOUT_FILENO), in = dup(STDIN_FILENO);
  ~SavedStdio() {
    dup2(err, STDERR_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(in, STDIN_FILENO);
    close(err);
    close(out);
    close(in);
  }
};

std::string read(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

fs::path temp_dir() {
  char pattern[] = "/tmp/deployctl-detached-log-XXXXXX";
  return fs::path(mkdtemp(pattern));
}

}  // namespace

TEST_CASE("detached log: rotates at the cap, every line whole, stderr follows the new file") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "supervisor.log").string();
  {
    SavedStdio saved;
    REQUIRE(redirect_to_detached_log(path, 4096));
    auto logger = make_detached_logger("test", path, 4096);
    logger->set_pattern("%v");
    for (int i = 0; i < 100; ++i) logger->info("message {:03} {}", i, std::string(50, 'm'));
    logger->flush();
    const std::string last = "written by the runtime to fd 2\n";
    REQUIRE(write(STDERR_FILENO, last.data(), last.size()) == static_cast<ssize_t>(last.size()));
  }
  const std::string current = read(dir / "supervisor.log");
  const std::string previous = read(dir / "supervisor.log.1");
  CHECK(current.size() <= 4096);
  CHECK(previous.size() <= 4096);
  CHECK(current.find("message 099") != std::string::npos);
  CHECK(current.find("written by the runtime to fd 2") != std::string::npos);
  for (const std::string& text : {current, previous}) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("written", 0) == 0) continue;
      CHECK(line.size() == 62);  // "message NNN " + 50
    }
  }
  CHECK_FALSE(fs::exists(dir / "supervisor.log.new"));
  fs::remove_all(dir);
}

TEST_CASE("detached log: a log over the cap from an earlier run is set aside at start") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "supervisor.log").string();
  std::ofstream(path) << std::string(5000, 'o') << "\n";
  {
    SavedStdio saved;
    REQUIRE(redirect_to_detached_log(path, 4096));
  }
  CHECK(fs::file_size(dir / "supervisor.log") == 0);
  CHECK(fs::file_size(dir / "supervisor.log.1") == 5001);
  fs::remove_all(dir);
}
