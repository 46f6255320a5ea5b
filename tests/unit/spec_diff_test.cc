#include <doctest/doctest.h>

#include "load.h"
#include "spec_diff.h"

using namespace deployctl;

namespace {
Spec load(const char* text) {
  auto result = parse_spec(text, "/tmp/deploy.toml");
  REQUIRE_MESSAGE(result.spec, (result.errors.empty() ? "" : result.errors[0].to_string()));
  return *result.spec;
}
}  // namespace

TEST_CASE("spec diff: identical specs differ in nothing") {
  const char* text = "[services.web]\ncommand = [\"a\"]\nreplicas = 2\n";
  auto diff = diff_specs(load(text), load(text));
  CHECK(diff.empty());
  CHECK_FALSE(diff.pre_start_changed);
}

TEST_CASE("spec diff: replicas only is a rescale, anything else rolls") {
  auto before = load("[services.web]\ncommand = [\"a\"]\nreplicas = 2\n"
                     "[services.api]\ncommand = [\"b\"]\n");
  auto after = load("[services.web]\ncommand = [\"a\"]\nreplicas = 5\n"
                    "[services.api]\ncommand = [\"b\", \"--fast\"]\n");
  auto diff = diff_specs(before, after);
  CHECK(diff.rescaled == std::vector<std::string>{"web"});
  CHECK(diff.rolled == std::vector<std::string>{"api"});
  CHECK(diff.added.empty());
  CHECK(diff.removed.empty());
}

TEST_CASE("spec diff: added and removed services, nested settings, pre_start") {
  auto before = load("[services.web]\ncommand = [\"a\"]\n[services.old]\ncommand = [\"o\"]\n");
  auto after = load(
      "[[pre_start]]\ncommand = [\"migrate\"]\n"
      "[services.web]\ncommand = [\"a\"]\n[services.web.health]\ninterval = \"2s\"\n"
      "[services.new]\ncommand = [\"n\"]\n");
  auto diff = diff_specs(before, after);
  CHECK(diff.added == std::vector<std::string>{"new"});
  CHECK(diff.removed == std::vector<std::string>{"old"});
  CHECK(diff.rolled == std::vector<std::string>{"web"});
  CHECK(diff.pre_start_changed);
}
