// Tests of config/: the value parsers, the spec loader, and the spec files in tests/specs/.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "load.h"
#include "suggest.h"

namespace fs = std::filesystem;
using namespace deployctl;
using namespace std::chrono_literals;

namespace {

// Absolute and normal, as the loader makes spec paths (a compiler cache may make __FILE__
// relative to the build directory, where ctest runs the unit tests).
fs::path specs_dir() {
  return fs::weakly_canonical(fs::absolute(fs::path(__FILE__).parent_path().parent_path() / "specs"));
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<fs::path> toml_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".toml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string all_errors(const LoadResult& result) {
  std::string text;
  for (const SpecError& error : result.errors) text += error.to_string() + "\n";
  return text;
}

// Parses text that must be valid, failing the test with its errors otherwise.
Spec valid_spec(std::string_view text, const std::string& file = "/srv/app/deploy.toml") {
  LoadResult result = parse_spec(text, file);
  INFO(all_errors(result));
  REQUIRE(result.spec.has_value());
  CHECK(result.errors.empty());
  return *result.spec;
}

// The single error text expects, as "LINE:COL: KEY: MESSAGE" of file "t.toml".
std::string only_error(std::string_view text) {
  LoadResult result = parse_spec(text, "t.toml");
  CHECK_FALSE(result.spec.has_value());
  INFO(all_errors(result));
  REQUIRE(result.errors.size() == 1);
  return result.errors[0].to_string();
}

std::optional<Duration> duration(std::string_view text) {
  std::string error;
  return parse_duration(text, &error);
}

std::string duration_error(std::string_view text) {
  std::string error;
  CHECK_FALSE(parse_duration(text, &error).has_value());
  return error;
}

std::optional<std::uint64_t> size(std::string_view text) {
  std::string error;
  return parse_size(text, &error);
}

std::vector<std::string> split(std::string_view text) {
  std::string error;
  std::vector<std::string> words = split_command(text, &error);
  INFO(error);
  CHECK(error.empty());
  return words;
}

std::string split_error(std::string_view text) {
  std::string error;
  CHECK(split_command(text, &error).empty());
  return error;
}

using Words = std::vector<std::string>;
constexpr std::uint64_t kMiB = 1024 * 1024;

}  // namespace

TEST_CASE("config: durations take ms, s, m, h and compounds") {
  CHECK(duration("100ms") == 100ms);
  CHECK(duration("1s") == 1000ms);
  CHECK(duration("1.5s") == 1500ms);
  CHECK(duration("1.1s") == 1100ms);
  CHECK(duration("2m") == 120000ms);
  CHECK(duration("1h") == 3600000ms);
  CHECK(duration("1m30s") == 90000ms);
  CHECK(duration("1h2m3s4ms") == 3723004ms);
  CHECK(duration("0s") == 0ms);  // parses; the loader rejects 0 where a delay is needed
  CHECK(duration("8760h") == Duration{365LL * 24 * 3600 * 1000});
}

TEST_CASE("config: bad durations say why") {
  CHECK(duration_error("5") == "invalid duration \"5\": durations need a unit, e.g. \"500ms\" "
                               "or \"2s\"");
  CHECK(duration_error("5x") == "invalid duration \"5x\": unknown unit \"x\"; use ms, s, m or h");
  CHECK(duration_error("") ==
        "invalid duration \"\": give a number with a unit, e.g. \"500ms\" or \"2s\"");
  CHECK(duration_error("-1s") == "invalid duration \"-1s\": durations cannot be negative");
  CHECK(duration_error("30s1m").find("largest first") != std::string::npos);
  CHECK(duration_error("1s1s").find("largest first") != std::string::npos);
  CHECK(duration_error("0.5ms").find("whole milliseconds") != std::string::npos);
  CHECK(duration_error("8761h").find("at most 8760h") != std::string::npos);
  CHECK(duration_error("99999999999999999999999h").find("too") != std::string::npos);
  CHECK_FALSE(duration("1 s"));
  CHECK_FALSE(duration(" 1s"));
  CHECK_FALSE(duration("1S"));
  CHECK_FALSE(duration(".5s"));
  CHECK_FALSE(duration("1.s"));
  CHECK_FALSE(duration("1m30"));
}

TEST_CASE("config: sizes are 1024-based with an optional B, like systemd") {
  CHECK(size("1024") == 1024u);
  CHECK(size("1024B") == 1024u);
  CHECK(size("64K") == 64u * 1024);
  CHECK(size("64KiB") == 64u * 1024);
  CHECK(size("512MiB") == 512 * kMiB);
  CHECK(size("512M") == 512 * kMiB);
  CHECK(size("512MB") == 512 * kMiB);
  CHECK(size("512mib") == 512 * kMiB);
  CHECK(size("1G") == 1024 * kMiB);
  CHECK(size("1.5G") == 1536 * kMiB);
  CHECK(size("2T") == 2 * 1024 * 1024 * kMiB);
  CHECK(size("0") == 0u);  // parses; the loader rejects 0
  std::string error;
  CHECK_FALSE(parse_size("512Q", &error));
  CHECK(error == "invalid size \"512Q\": unknown unit \"Q\"; use K, M, G, T, KiB, MiB, GiB or TiB");
  CHECK_FALSE(parse_size("-1G", &error));
  CHECK(error == "invalid size \"-1G\": sizes cannot be negative");
  CHECK_FALSE(size(""));
  CHECK_FALSE(size("MiB"));
  CHECK_FALSE(size("1 MiB"));
  CHECK_FALSE(size("9999999999T"));
  CHECK_FALSE(size("99999999999999999999999"));
}

TEST_CASE("config: split_command splits like a shell without running one") {
  CHECK(split("./app --port 8000") == Words{"./app", "--port", "8000"});
  CHECK(split("  a \t b\n c  ") == Words{"a", "b", "c"});
  CHECK(split("echo 'a b' \"c d\"") == Words{"echo", "a b", "c d"});
  CHECK(split("echo 'it''s'") == Words{"echo", "its"});
  CHECK(split("echo \"say \\\"hi\\\" \\$HOME \\n\"") == Words{"echo", "say \"hi\" $HOME \\n"});
  CHECK(split("a\\ b c\\\\d") == Words{"a b", "c\\d"});
  CHECK(split("a \\\n b") == Words{"a", "b"});
  CHECK(split("x '' \"\"") == Words{"x", "", ""});
  CHECK(split("echo $HOME ~ *.py") == Words{"echo", "$HOME", "~", "*.py"});
  CHECK(split("sh -c 'a && b' '|'") == Words{"sh", "-c", "a && b", "|"});
  CHECK(split("grep a\\|b") == Words{"grep", "a|b"});
}

TEST_CASE("config: split_command rejects what it cannot split faithfully") {
  CHECK(split_error("") == "command is empty");
  CHECK(split_error("  \t ") == "command is empty");
  CHECK(split_error("echo 'oops") == "unterminated single quote");
  CHECK(split_error("echo \"oops") == "unterminated double quote");
  CHECK(split_error("echo \"oops\\\"") == "unterminated double quote");
  CHECK(split_error("echo oops\\") == "trailing backslash");
  CHECK(split_error("a && b").starts_with("'&&' is shell syntax"));
  CHECK(split_error("a | b").starts_with("'|' is shell syntax"));
  CHECK(split_error("a > log").starts_with("'>' is shell syntax"));
}

TEST_CASE("config: expand_placeholders fills {replica} and {port}") {
  CHECK(expand_placeholders("--id={replica}", 3, std::nullopt) == "--id=3");
  CHECK(expand_placeholders("{port}/{replica}", 2, 9002) == "9002/2");
  CHECK(expand_placeholders("{port}", 2, std::nullopt) == "{port}");
  CHECK(expand_placeholders("{{replica}} {{}}", 1, 80) == "{replica} {}");
  CHECK(expand_placeholders("{other} {", 1, 80) == "{other} {");
  CHECK(expand_placeholders("", 0, std::nullopt).empty());
}

TEST_CASE("config: signals by name or number") {
  CHECK(parse_signal("SIGTERM") == SIGTERM);
  CHECK(parse_signal("TERM") == SIGTERM);
  CHECK(parse_signal("sigterm") == SIGTERM);
  CHECK(parse_signal("15") == 15);
  CHECK(parse_signal("SIGINT") == SIGINT);
  CHECK(parse_signal("usr1") == SIGUSR1);
  CHECK(parse_signal("SIGKILL") == SIGKILL);
  CHECK_FALSE(parse_signal(""));
  CHECK_FALSE(parse_signal("SIG"));
  CHECK_FALSE(parse_signal("SIGFOO"));
  CHECK_FALSE(parse_signal("0"));
  CHECK_FALSE(parse_signal("-15"));
  CHECK_FALSE(parse_signal("999"));
  CHECK_FALSE(parse_signal("15x"));
  CHECK(signal_name(SIGTERM) == "SIGTERM");
  CHECK(signal_name(SIGHUP) == "SIGHUP");
  CHECK(signal_name(40) == "40");
  CHECK(parse_signal(signal_name(SIGWINCH)) == SIGWINCH);
}

TEST_CASE("config: did you mean") {
  const std::vector<std::string_view> keys{"command", "replicas", "listen", "port", "env"};
  CHECK(edit_distance("replicas", "replicas") == 0);
  CHECK(edit_distance("replcas", "replicas") == 1);
  CHECK(edit_distance("replicsa", "replicas") == 1);  // adjacent swap is one edit
  CHECK(edit_distance("", "abc") == 3);
  CHECK(closest_match("replcas", keys) == "replicas");
  CHECK(closest_match("comand", keys) == "command");
  CHECK(closest_match("ports", keys) == "port");
  CHECK(closest_match("lsiten", keys) == "listen");
  CHECK(closest_match("Command", keys) == "command");
  CHECK_FALSE(closest_match("banana", keys));
  CHECK_FALSE(closest_match("x", keys));  // a complete rewrite is not a typo
  CHECK_FALSE(closest_match("anything", {}));
}

TEST_CASE("config: SpecError::to_string") {
  CHECK(SpecError{"a.toml", 4, 12, "services.web.replicas", "bad"}.to_string() ==
        "a.toml:4:12: services.web.replicas: bad");
  CHECK(SpecError{"a.toml", 1, 2, "", "syntax"}.to_string() == "a.toml:1:2: syntax");
  CHECK(SpecError{"a.toml", 0, 0, "", "cannot open"}.to_string() == "a.toml: cannot open");
}

TEST_CASE("config: a minimal spec gets every default") {
  const Spec spec = valid_spec("[services.web]\ncommand = [\"./server\"]\n");
  CHECK(spec.name == "deploy");
  CHECK(spec.path == "/srv/app/deploy.toml");
  CHECK(spec.pre_start.empty());
  REQUIRE(spec.services.size() == 1);
  const ServiceSpec& web = spec.services[0];
  const ServiceSpec defaults;
  CHECK(web.name == "web");
  CHECK(web.command == Words{"./server"});
  CHECK(web.replicas == 1);
  CHECK_FALSE(web.replicas_auto);
  CHECK(web.listen.empty());
  CHECK_FALSE(web.port);
  CHECK(web.env.empty());
  CHECK(web.env_file.empty());
  CHECK(web.working_dir == "/srv/app");
  CHECK(web.user.empty());
  CHECK(web.group.empty());
  CHECK(web.restart.policy == RestartPolicy::always);
  CHECK(web.restart.backoff.initial == 100ms);
  CHECK(web.restart.backoff.max == 30s);
  CHECK(web.restart.backoff.reset_after == 60s);
  CHECK(web.restart.backoff.jitter == doctest::Approx(0.2));
  CHECK(web.restart.crash_loop.restarts == 5);
  CHECK(web.restart.crash_loop.within == 60s);
  CHECK(web.health.kind == HealthKind::control);
  CHECK(web.health.path.empty());
  CHECK(web.health.command.empty());
  CHECK(web.health.interval == 1s);
  CHECK(web.health.timeout == 500ms);
  CHECK(web.health.failures == 3);
  CHECK(web.health.start_period == 30s);
  CHECK_FALSE(web.memory.max);
  CHECK_FALSE(web.memory.restart_above);
  CHECK(web.stop.signal == SIGTERM);
  CHECK(web.stop.timeout == 30s);
  CHECK(web.rollout.max_surge == defaults.rollout.max_surge);
  CHECK(web.rollout.max_unavailable == defaults.rollout.max_unavailable);
}

TEST_CASE("config: the full spec sets every key") {
  const fs::path dir = specs_dir() / "good";
  LoadResult result = load_spec_file((dir / "full.toml").string());
  INFO(all_errors(result));
  REQUIRE(result.spec);
  const Spec& spec = *result.spec;
  CHECK(spec.name == "shop");
  CHECK(spec.path == (dir / "full.toml").string());

  REQUIRE(spec.pre_start.size() == 2);
  const PreStartStep& migrate = spec.pre_start[0];
  CHECK(migrate.name == "migrate");
  CHECK(migrate.command == Words{"./manage", "migrate", "--noinput"});
  CHECK(migrate.timeout == 2min);
  CHECK(migrate.env == EnvList{{"DJANGO_SETTINGS", "shop.settings"}, {"VERBOSE", "true"}});
  CHECK(migrate.working_dir == (dir / "app").string());
  const PreStartStep& second = spec.pre_start[1];
  CHECK(second.name == "step-2");
  CHECK(second.command == Words{"./manage", "collect static", "--clear"});
  CHECK(second.timeout == 60s);
  CHECK(second.working_dir == dir.string());

  REQUIRE(spec.services.size() == 2);
  const ServiceSpec& web = spec.services[0];
  CHECK(web.name == "web");
  CHECK(web.command == Words{"deploy-server", "--root", "public", "--id", "{replica}"});
  CHECK(web.replicas == 4);
  CHECK_FALSE(web.replicas_auto);
  REQUIRE(web.listen.size() == 3);
  CHECK(web.listen[0].host == "127.0.0.1");
  CHECK(web.listen[0].port == 8000);
  CHECK(web.listen[0].text == "127.0.0.1:8000");
  CHECK(web.listen[1].host == "::1");
  CHECK(web.listen[1].port == 8001);
  CHECK(web.listen[1].text == "[::1]:8001");
  CHECK(web.listen[2].host == "127.0.0.1");
  CHECK(web.listen[2].text == "localhost:8002");
  CHECK_FALSE(web.port);
  CHECK(web.env == EnvList{{"APP_ENV", "production"},
                           {"WORKERS", "4"},
                           {"RATIO", "0.5"},
                           {"DEBUG", "false"},
                           {"REPLICA", "{replica}"}});
  CHECK(web.env_file == "/etc/shop/web.env");
  CHECK(web.working_dir == (dir / "srv").string());
  CHECK(web.user == "www-data");
  CHECK(web.group == "www-data");
  CHECK(web.restart.policy == RestartPolicy::on_failure);
  CHECK(web.restart.backoff.initial == 250ms);
  CHECK(web.restart.backoff.max == 1min);
  CHECK(web.restart.backoff.reset_after == 150s);
  CHECK(web.restart.backoff.jitter == doctest::Approx(0.5));
  CHECK(web.restart.crash_loop.restarts == 7);
  CHECK(web.restart.crash_loop.within == 90s);
  CHECK(web.health.kind == HealthKind::http);
  CHECK(web.health.path == "/ready");
  CHECK(web.health.interval == 2s);
  CHECK(web.health.timeout == 1500ms);
  CHECK(web.health.failures == 4);
  CHECK(web.health.start_period == 45s);
  CHECK(web.memory.max == 512 * kMiB);
  CHECK(web.memory.restart_above == 400 * kMiB);
  CHECK(web.stop.signal == SIGINT);
  CHECK(web.stop.timeout == 10s);
  CHECK(web.rollout.max_surge == 2);
  CHECK(web.rollout.max_unavailable == 1);

  const ServiceSpec& worker = spec.services[1];
  CHECK(worker.name == "worker");
  CHECK(worker.command == Words{"./worker", "--queue", "default", "--port", "{port}"});
  CHECK(worker.replicas_auto);
  CHECK(worker.replicas == static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CHECK(worker.port == 9000);
  CHECK(worker.env_file == (dir / "worker.env").string());
  CHECK(worker.health.kind == HealthKind::exec);
  CHECK(worker.health.command == Words{"./check", "--port", "{port}"});
  CHECK(worker.memory.max == 1024 * kMiB);
  CHECK_FALSE(worker.memory.restart_above);
  CHECK(worker.stop.signal == SIGQUIT);

  CHECK(spec.find_service("worker") == &spec.services[1]);
  CHECK(spec.find_service("web") == &spec.services[0]);
  CHECK(spec.find_service("nope") == nullptr);
}

TEST_CASE("config: every spec in tests/specs/good loads") {
  const std::vector<fs::path> files = toml_files(specs_dir() / "good");
  CHECK(files.size() >= 2);
  for (const fs::path& file : files) {
    const LoadResult result = load_spec_file(file.string());
    INFO(file.string(), "\n", all_errors(result));
    CHECK(result.spec.has_value());
  }
}

// Each bad spec's first line is "# expect: <the one error, with the file's basename>".
TEST_CASE("config: every spec in tests/specs/bad fails with exactly its expected error") {
  const std::vector<fs::path> files = toml_files(specs_dir() / "bad");
  CHECK(files.size() >= 30);
  for (const fs::path& file : files) {
    const std::string text = read_text(file);
    const std::string prefix = "# expect: ";
    INFO(file.string());
    REQUIRE(text.starts_with(prefix));
    const std::string expected = text.substr(prefix.size(), text.find('\n') - prefix.size());
    const LoadResult result = parse_spec(text, file.filename().string());
    INFO(all_errors(result));
    CHECK_FALSE(result.spec.has_value());
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].to_string() == expected);
  }
}

TEST_CASE("config: all errors of a file are reported, in file order") {
  const LoadResult result = parse_spec(R"(name = "ok"
[services.web]
replicas = -2
command = 7
[services.web.stop]
timeout = 5
[services.api]
comand = ["./api"]
)",
                                       "multi.toml");
  CHECK_FALSE(result.spec);
  std::vector<std::string> got;
  for (const SpecError& error : result.errors) got.push_back(error.to_string());
  CHECK(got == std::vector<std::string>{
                   "multi.toml:3:12: services.web.replicas: must be from 0 to 1000, got -2",
                   "multi.toml:4:11: services.web.command: expected an array of strings such as "
                   "[\"./app\", \"--port\", \"8000\"] or a string, got integer 7",
                   "multi.toml:6:11: services.web.stop.timeout: durations need a unit, e.g. "
                   "\"500ms\" (got integer 5)",
                   "multi.toml:7:1: services.api.command: every service needs a command, e.g. "
                   "command = [\"./server\"]",
                   "multi.toml:8:1: services.api.comand: unknown key 'comand'; did you mean "
                   "'command'?",
               });
}

TEST_CASE("config: services and env keep file order") {
  const Spec spec = valid_spec(R"(
[services.zeta]
command = "./z"
env = { ZED = "1", ALPHA = "2", MIDDLE = "3" }
[services.alpha]
command = "./a"
)");
  REQUIRE(spec.services.size() == 2);
  CHECK(spec.services[0].name == "zeta");
  CHECK(spec.services[1].name == "alpha");
  CHECK(spec.services[0].env == EnvList{{"ZED", "1"}, {"ALPHA", "2"}, {"MIDDLE", "3"}});
}

TEST_CASE("config: values at the edges of their ranges") {
  const Spec spec = valid_spec(R"(
[services.web]
command = ["./server", "--port", "{port}", "{{literal}}"]
replicas = 0
port = 65535
memory = { max = "1G", restart_above = 1 }
health = { kind = "tcp", interval = "1s", timeout = "1s" }
restart = { backoff = { initial = "1s", max = "1s", jitter = 0 } }
rollout = { max_surge = 0, max_unavailable = 1 }
stop = { signal = 9 }
)");
  const ServiceSpec& web = spec.services[0];
  CHECK(web.replicas == 0);
  CHECK(web.port == 65535);
  CHECK(web.memory.restart_above == 1u);
  CHECK(web.health.kind == HealthKind::tcp);
  CHECK(web.restart.backoff.jitter == 0.0);
  CHECK(web.stop.signal == SIGKILL);
  CHECK(only_error("[services.web]\ncommand = \"x\"\nreplicas = 1001\n") ==
        "t.toml:3:12: services.web.replicas: must be from 0 to 1000, got 1001");
  CHECK(only_error("[services.web]\ncommand = \"x\"\nport = 0\n") ==
        "t.toml:3:8: services.web.port: must be from 1 to 65535, got 0");
}

TEST_CASE("config: http health defaults its path to /healthz") {
  const Spec spec = valid_spec(R"(
[services.web]
command = "./server"
listen = ["127.0.0.1:8000"]
health = { kind = "http" }
)");
  CHECK(spec.services[0].health.path == "/healthz");
}

TEST_CASE("config: paths resolve against the spec file's directory") {
  const Spec spec = valid_spec(R"(
[[pre_start]]
command = "./migrate"
working_dir = "../shared"
[services.web]
command = "./server"
working_dir = "./srv/"
env_file = "/abs/web.env"
)",
                               "/srv/app/deploy.toml");
  CHECK(spec.pre_start[0].working_dir == "/srv/shared");
  CHECK(spec.services[0].working_dir == "/srv/app/srv");
  CHECK(spec.services[0].env_file == "/abs/web.env");

  const Spec relative = valid_spec("[services.web]\ncommand = \"x\"\n", "conf/shop.toml");
  CHECK(relative.name == "shop");
  CHECK(relative.path == (fs::current_path() / "conf/shop.toml").string());
  CHECK(relative.services[0].working_dir == (fs::current_path() / "conf").string());
}

TEST_CASE("config: the default name must be usable") {
  LoadResult result = parse_spec("[services.web]\ncommand = \"x\"\n", "/etc/my app.toml");
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].to_string().starts_with(
      "/etc/my app.toml: name: the file name \"my app\" cannot be the spec name"));
}

TEST_CASE("config: load_spec_file reports files it cannot read") {
  const fs::path missing = fs::temp_directory_path() / "deployctl-config-test-missing.toml";
  fs::remove(missing);
  LoadResult result = load_spec_file(missing.string());
  CHECK_FALSE(result.spec);
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].to_string() ==
        missing.string() + ": cannot open spec file: No such file or directory");

  result = load_spec_file(fs::temp_directory_path().string());
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].message.find("is a directory") != std::string::npos);
}

TEST_CASE("config: parse_spec never throws on hostile input") {
  const std::vector<std::string> inputs{
      "",
      std::string("\0\xff\xfe", 3),
      "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
      "[services.web]\ncommand = \"\\u0000\"\n",
      "[services.\"\\n\"]\ncommand = [\"\"]\n",
      "services = 5\npre_start = [1, 2]\n",
      "[services.web]\ncommand = \"x\"\nreplicas = 9223372036854775807\nport = -9223372036854775808\n",
      "[services.web]\ncommand = \"x\"\nrestart = { backoff = { jitter = nan } }\n",
  };
  for (const std::string& input : inputs) {
    LoadResult result;
    CHECK_NOTHROW(result = parse_spec(input, "hostile.toml"));
    CHECK(result.spec.has_value() != !result.errors.empty());
  }
}
