#include <doctest/doctest.h>

#include "output.h"

using namespace deployctl;
using namespace std::chrono_literals;

TEST_CASE("output: lines split across feeds, CRLF trimmed, rest kept") {
  LineSplitter splitter;
  std::vector<std::string> lines;
  splitter.feed("hel", &lines);
  splitter.feed("lo\nwor", &lines);
  splitter.feed("ld\r\n\npart", &lines);
  CHECK(lines == std::vector<std::string>{"hello", "world", ""});
  CHECK(splitter.take_rest() == "part");
  CHECK(splitter.take_rest().empty());
}

TEST_CASE("output: overlong lines are cut at max_line") {
  LineSplitter splitter(4);
  std::vector<std::string> lines;
  splitter.feed("abcdefghij\nxy\n", &lines);
  CHECK(lines == std::vector<std::string>{"abcd", "efgh", "ij", "xy"});
}

TEST_CASE("output: read budget refills at its rate up to the burst") {
  TimePoint t{};
  ReadBudget budget(1000, 500, t);
  CHECK(budget.available(t) == 500);
  budget.consume(500);
  CHECK(budget.available(t) == 0);
  CHECK(budget.wait_for(100, t) == 100ms);
  CHECK(budget.available(t + 100ms) == 100);
  CHECK(budget.available(t + 10s) == 500);
}
