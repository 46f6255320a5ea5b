// deploy_export: golden files over every example spec and the edge specs, and the rules the
// golden files do not make obvious. Regenerate the golden files after an intended change:
//   DEPLOYCTL_UPDATE_GOLDEN=1 build/bin/unit_tests -ts=export
// (then review `git diff tests/export/golden`).
#include "export.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bind_flags.h"
#include "env_file.h"
#include "unit_file.h"

namespace deployctl::exporter {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = fs::path(DEPLOYCTL_SOURCE_DIR);
// Specs are loaded as if they lived under this directory, so paths in the output are stable.
const fs::path kVirtualRoot = "/srv/deploy";

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Loaded {
  Spec spec;
  SourceMap positions;
  std::map<std::string, EnvList> env_files;
};

Loaded load(const std::string& relative) {
  LoadResult result = parse_spec(slurp(kSource / relative), (kVirtualRoot / relative).string());
  for (const auto& error : result.errors) INFO(error.to_string());
  REQUIRE(result.spec);
  Loaded loaded{*result.spec, result.positions, {}};
  for (auto& service : loaded.spec.services) {
    if (service.replicas_auto) service.replicas = 2;  // not this machine's CPU count
    const fs::path relative_env = fs::path(service.env_file).lexically_relative(kVirtualRoot);
    if (service.env_file.empty() || relative_env.empty() || *relative_env.begin() == "..") continue;
    std::string problem;
    if (auto env = parse_env_file(slurp(kSource / relative_env), &problem)) {
      loaded.env_files[service.env_file] = *env;
    }
  }
  return loaded;
}

std::string warnings_text(const ExportResult& result) {
  std::string out;
  for (const auto& warning : result.warnings) out += warning.to_string() + "\n";
  for (const auto& error : result.errors) out += "error: " + error.to_string() + "\n";
  return out;
}

void check_golden(const std::string& name, const std::string& actual) {
  const fs::path path = kSource / "tests/export/golden" / name;
  if (std::getenv("DEPLOYCTL_UPDATE_GOLDEN")) {
    std::ofstream(path, std::ios::binary) << actual;
    return;
  }
  INFO("golden file ", path.string(), " (regenerate: DEPLOYCTL_UPDATE_GOLDEN=1)");
  REQUIRE(fs::exists(path));
  CHECK(slurp(path) == actual);
}

const char* const kSpecs[] = {
    "config/examples/deploy.toml",
    "config/examples/example.toml",
    "config/examples/fastapi/uvicorn.toml",
    "config/examples/fastapi/gunicorn.toml",
    "config/examples/fastapi/notify.toml",
    "config/examples/fastapi/ports.toml",
    "tests/specs/good/full.toml",
    "tests/specs/good/minimal.toml",
    "tests/specs/good/uvicorn.toml",
    "tests/specs/good/gunicorn.toml",
    "tests/export/specs/edge_fd_servers.toml",
    "tests/export/specs/edge_quoting.toml",
};

std::string golden_stem(std::string relative) {
  for (char& c : relative) c = c == '/' ? '_' : c;
  return relative.substr(0, relative.size() - 5);  // without ".toml"
}

TEST_SUITE("export") {
  TEST_CASE("golden files: kubernetes and systemd for every example and edge spec") {
    for (const char* relative : kSpecs) {
      CAPTURE(relative);
      const Loaded loaded = load(relative);
      const ExportInput input{loaded.spec, loaded.positions, loaded.env_files};
      ExportResult k8s = export_kubernetes(input, KubernetesOptions{"registry.example/app:1", ""});
      std::string yaml;
      for (const auto& file : k8s.files) yaml += "# " + file.name + "\n" + file.text;
      check_golden(golden_stem(relative) + ".kubernetes.yaml", yaml);
      check_golden(golden_stem(relative) + ".kubernetes.warnings", warnings_text(k8s));
      ExportResult units = export_systemd(input, SystemdOptions{252});
      std::string text;
      for (const auto& file : units.files) text += "### " + file.name + "\n" + file.text;
      check_golden(golden_stem(relative) + ".systemd", text);
      check_golden(golden_stem(relative) + ".systemd.warnings", warnings_text(units));
    }
  }

  TEST_CASE("a warning names the file, line and column of its key") {
    const Loaded loaded = load("tests/specs/good/full.toml");
    const ExportInput input{loaded.spec, loaded.positions, loaded.env_files};
    ExportResult result = export_kubernetes(input, KubernetesOptions{"img", ""});
    bool found = false;
    for (const auto& warning : result.warnings) {
      if (warning.key != "services.web.stop.signal") continue;
      found = true;
      CHECK(warning.file == "/srv/deploy/tests/specs/good/full.toml");
      CHECK(warning.line == 42);  // signal = "SIGINT"
      CHECK(warning.column == 1);
    }
    CHECK(found);
  }

  TEST_CASE("no image: an error naming both ways to give one") {
    const Loaded loaded = load("config/examples/deploy.toml");
    const ExportInput input{loaded.spec, loaded.positions, loaded.env_files};
    ExportResult result = export_kubernetes(input, KubernetesOptions{});
    REQUIRE(result.errors.size() == 1);
    CHECK(result.files.empty());
    CHECK(result.errors[0].message.find("--image") != std::string::npos);
  }

  TEST_CASE("the image comes from [export.kubernetes] unless --image overrides it") {
    const Loaded loaded = load("tests/export/specs/edge_fd_servers.toml");
    const ExportInput input{loaded.spec, loaded.positions, loaded.env_files};
    CHECK(export_kubernetes(input, {}).files[0].text.find("registry.example/edge:1") !=
          std::string::npos);
    CHECK(export_kubernetes(input, {"other:2", "ns"}).files[0].text.find("registry.example") ==
          std::string::npos);
  }

  TEST_CASE("bind flags: fd arguments are replaced for known servers only") {
    using V = std::vector<std::string>;
    CHECK(bind_by_itself({"uvicorn", "app", "--fd", "3"}, {8000}, "0.0.0.0").command ==
          V{"uvicorn", "app", "--host", "0.0.0.0", "--port", "8000"});
    CHECK(bind_by_itself({"gunicorn", "app", "--bind=fd://3"}, {1, 2}, "0.0.0.0").command ==
          V{"gunicorn", "app", "--bind", "0.0.0.0:1", "--bind", "0.0.0.0:2"});
    CHECK(bind_by_itself({"uvicorn", "app", "--port", "9"}, {8000}, "0.0.0.0").command ==
          V{"uvicorn", "app", "--port", "9"});
    BindRewrite unknown = bind_by_itself({"./srv", "--fd", "3"}, {8000}, "0.0.0.0");
    CHECK(unknown.command == V{"./srv", "--fd", "3"});
    CHECK_FALSE(unknown.problem.empty());
    CHECK(bind_by_itself({"./batch"}, {}, "0.0.0.0").problem.empty());
    CHECK_FALSE(bind_by_itself({"uvicorn", "a", "--fd", "3"}, {1, 2}, "0.0.0.0").problem.empty());
  }

  TEST_CASE("unit files: words and values reach the program unchanged") {
    CHECK(unit::template_word("plain") == "plain");
    CHECK(unit::template_word("two words") == "\"two words\"");
    CHECK(unit::template_word("50%") == "50%%");
    CHECK(unit::template_word("$HOME") == "$$HOME");
    CHECK(unit::template_word("a\"b") == "\"a\\\"b\"");
    CHECK(unit::template_word("--id={replica}") == "--id=%i");
    CHECK(unit::template_word("{port}") == "${DEPLOYCTL_PORT}");
    CHECK(unit::template_word("{{x}}") == "{x}");
    CHECK(unit::environment("A", "1%") == "Environment=\"A=1%%\"");
    CHECK(unit::escape_name("seed data") == "seed\\x20data");
    CHECK(unit::timespan(Duration(1500)) == "1500ms");
    CHECK(unit::timespan(Duration(30000)) == "30s");
  }
}

TEST_CASE("systemd: per-replica sockets are exported as one socket, with a warning at the key") {
  LoadResult result = parse_spec(
      "[services.web]\ncommand = [\"./server\"]\nlisten = [\"127.0.0.1:8000\"]\n"
      "sockets = \"per-replica\"\n",
      "/srv/deploy/deploy.toml");
  REQUIRE(result.spec);
  const ExportInput input{*result.spec, result.positions, {}};
  const std::string warnings = warnings_text(export_systemd(input, SystemdOptions{252}));
  INFO(warnings);
  CHECK(warnings.find("deploy.toml:4:1: services.web.sockets: systemd has no steering") !=
        std::string::npos);
}

}  // namespace
}  // namespace deployctl::exporter
