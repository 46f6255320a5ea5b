// The edges of an upgrade in place (upgrade.h) and of the leftovers record (leftovers.h), with
// real processes, memfds and /proc.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "deployment_state_json.h"
#include "leftovers.h"
#include "upgrade.h"

using namespace deployctl;

namespace {

std::string state_text(int format, const std::string& spec_text) {
  json::Value doc;
  doc["format"] = format;
  doc["spec_path"] = "/tmp/deploy.toml";
  doc["spec_text"] = spec_text;
  doc["core"] = to_json(DeploymentState{});
  return json::dump(doc);
}

const char* kSpec = "name = \"u\"\n[services.web]\ncommand = [\"/bin/sleep\", \"60\"]\n";

}  // namespace

TEST_CASE("a state round-trips through a memfd and decodes") {
  std::string error;
  const std::string text = state_text(kUpgradeStateFormat, kSpec);
  int fd = write_state_fd(text, &error);
  REQUIRE(fd >= 0);
  CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0);  // it must survive the exec
  auto read = read_state_fd(fd);
  close(fd);
  REQUIRE(read);
  CHECK(*read == text);
  auto carried = decode_state(*read, &error);
  REQUIRE(carried);
  CHECK(carried->spec.name == "u");
}

TEST_CASE("a state of another format, a broken spec or no JSON is rejected with the reason") {
  std::string error;
  CHECK_FALSE(decode_state(state_text(kUpgradeStateFormat + 1, kSpec), &error));
  CHECK(error.find("state format 2") != std::string::npos);
  CHECK_FALSE(decode_state(state_text(kUpgradeStateFormat, "name = 3"), &error));
  CHECK(error.find("carried spec does not load") != std::string::npos);
  CHECK_FALSE(decode_state("{", &error));
  CHECK(error == "the state is not a JSON object");
}

TEST_CASE("run_check: output and exit status, bounded in time") {
  auto ok = run_check({"/bin/echo", "deployctl 9.9"}, std::chrono::seconds(5));
  CHECK(ok.ok);
  CHECK(ok.output == "deployctl 9.9");
  auto failed = run_check({"/bin/false"}, std::chrono::seconds(5));
  CHECK_FALSE(failed.ok);
  CHECK(failed.output == "exit status 1");
  auto missing = run_check({"/nonexistent/deployctl"}, std::chrono::seconds(5));
  CHECK_FALSE(missing.ok);
  CHECK(missing.output.find("No such file") != std::string::npos);
  const auto start = std::chrono::steady_clock::now();
  auto slow = run_check({"/bin/sleep", "10"}, std::chrono::milliseconds(200));
  CHECK_FALSE(slow.ok);
  CHECK(slow.output == "no answer within 200ms");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
}

TEST_CASE("carried_fds names every fd of a state document") {
  auto doc = json::parse(
      R"({"lock_fd":3,"management_fd":4,"services":{"web":[5,6]},)"
      R"("replicas":[{"control_fd":7,"notify_fd":-1,"out_fd":8,"err_fd":9}]})");
  REQUIRE(doc);
  CHECK(carried_fds(*doc) == std::vector<int>{3, 4, 5, 6, 7, -1, 8, 9});
}

TEST_CASE("leftovers: a live recorded replica is found and stopped; a reused pid is not") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("dctl-leftovers-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string record = replica_record_path(dir.string());
  // The pipe closes on the child's exec: only then is it `sleep`. Signalled before that, the
  // child would still be a copy of this test binary and report doctest's SIGTERM crash.
  int exec_done[2];
  REQUIRE(pipe2(exec_done, O_CLOEXEC) == 0);
  pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    execl("/bin/sleep", "sleep", "30", nullptr);
    _exit(127);
  }
  REQUIRE(child > 0);
  setpgid(child, child);
  close(exec_done[1]);
  char byte;
  while (read(exec_done[0], &byte, 1) < 0 && errno == EINTR) {
  }
  close(exec_done[0]);
  auto start = process_start_time(child);
  REQUIRE(start);
  auto me = process_start_time(getpid());
  REQUIRE(me);
  write_replica_record(record, {{"web.0", child, *start, SIGTERM},
                                {"web.1", getpid(), *me + 1, SIGTERM}});  // pid reused
  auto found = find_leftovers(record);
  REQUIRE(found.size() == 1);
  CHECK(found[0].id == "web.0");
  // Reap the child as its real parent would, so that it counts as gone once it exits.
  std::thread reaper([child] { waitpid(child, nullptr, 0); });
  CHECK(stop_leftovers(record, found, std::chrono::seconds(2)).empty());
  reaper.join();
  CHECK_FALSE(std::filesystem::exists(record));
  CHECK(describe_leftovers(found) == "web.0 (pid " + std::to_string(child) + ")");
  std::filesystem::remove_all(dir);
}
