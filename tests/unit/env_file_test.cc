#include <doctest/doctest.h>

#include "env_file.h"

using namespace deployctl;

TEST_CASE("env_file: names, values, quotes, comments") {
  std::string error;
  auto env = parse_env_file(
      "# comment\n; also a comment\n\nA=1\nexport B = two words \nC=\"quoted \\\"x\\\"\\nnext\"\n"
      "D='single $NOT_EXPANDED'\nE=\nF=a=b\r\n",
      &error);
  REQUIRE_MESSAGE(env, error);
  CHECK(*env == EnvList{{"A", "1"}, {"B", "two words"}, {"C", "quoted \"x\"\nnext"},
                        {"D", "single $NOT_EXPANDED"}, {"E", ""}, {"F", "a=b"}});
}

TEST_CASE("env_file: malformed lines name their line") {
  std::string error;
  CHECK_FALSE(parse_env_file("A=1\nno equals\n", &error));
  CHECK(error == "line 2: expected NAME=VALUE");
  CHECK_FALSE(parse_env_file("1X=1\n", &error));
  CHECK_FALSE(parse_env_file("A=\"open\n", &error));
  CHECK(error == "line 1: unterminated quote");
}
