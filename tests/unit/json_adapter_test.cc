// The thin wrapper over nlohmann-json (json.h): what the management API relies on when a local
// client sends anything at all, and what `status --json` relies on when it writes.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "json.h"

namespace json = deployctl::json;
using namespace std::string_literals;

namespace {

std::string nested(int depth, char open, char close) {
  return std::string(static_cast<std::size_t>(depth), open) +
         std::string(static_cast<std::size_t>(depth), close);
}

// The message parse() reports for text; fails the test if text parses.
std::string error_of(std::string_view text) {
  json::ParseError error;
  error.message = "untouched";
  auto value = json::parse(text, &error);
  INFO("text: ", text);
  CHECK_FALSE(value.has_value());
  CHECK(error.message != "untouched");
  CHECK_FALSE(error.message.empty());
  return error.message;
}

}  // namespace

TEST_CASE("json: malformed input is an error value, never an exception") {
  for (std::string_view text :
       {"", " ", "{", "[1,]", "{\"a\":1,}", "nul", "01", "1.", "-", "NaN", "Infinity", "1e400",
        "[1] [2]", "{\"a\" 1}", "{1:2}", "// c\n1", "\"\\x\"", "\"\\ud800\"", "\"a\nb\"",
        "\"\xC3\x28\"", "\"\xED\xA0\x80\"", "\"\xF5\x80\x80\x80\"", "\"abc"}) {
    CHECK_NOTHROW(error_of(text));
  }
  CHECK(error_of("[1,]").find("line 1, column 4") != std::string::npos);
  CHECK(json::parse("{\"a\":1}", nullptr).has_value());
  CHECK_FALSE(json::parse("{", nullptr).has_value());  // no error sink: still no throw
}

TEST_CASE("json: nesting is limited to kMaxDepth") {
  CHECK(json::parse(nested(json::kMaxDepth, '[', ']')).has_value());
  CHECK(error_of(nested(json::kMaxDepth + 1, '[', ']')).find("nested deeper") != std::string::npos);
  // A hostile line of a million brackets fails quickly, without recursion.
  CHECK(error_of(std::string(1'000'000, '[')).find("nested deeper") != std::string::npos);
  std::string objects;
  for (int i = 0; i <= json::kMaxDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(json::kMaxDepth + 1, '}');
  CHECK(error_of(objects).find("nested deeper") != std::string::npos);
}

TEST_CASE("json: objects keep insertion order, both built and parsed") {
  json::Value value;
  value["zeta"] = 1;
  value["alpha"] = 2;
  value["mid"] = json::Array{1, "x", nullptr};
  CHECK(json::dump(value) == R"({"zeta":1,"alpha":2,"mid":[1,"x",null]})");
  const char* text = R"({"z":1,"a":{"y":true,"b":false},"m":[]})";
  CHECK(json::dump(*json::parse(text)) == text);
  // A duplicate key: the last value wins, at the first one's place.
  CHECK(json::dump(*json::parse(R"({"z":1,"a":2,"z":3})")) == R"({"z":3,"a":2})");
}

TEST_CASE("json: integers are exact, doubles keep their point") {
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  const std::uint64_t umax = std::numeric_limits<std::uint64_t>::max();
  for (std::string_view text : {"0", "-1", "9007199254740993", "-9223372036854775808",
                                "18446744073709551615", "1.0", "0.1", "-2.5", "1e+300"}) {
    CHECK(json::dump(*json::parse(text)) == text);
  }
  CHECK(json::as_int(*json::parse("9007199254740993")) == 9007199254740993LL);
  CHECK(json::as_int(*json::parse("-9223372036854775808")) == min);
  CHECK(json::as_int(*json::parse("18446744073709551615"), -7) == -7);  // above int64
  CHECK(json::as_int(*json::parse("3.0")) == 3);
  CHECK(json::as_int(*json::parse("3.5"), -7) == -7);
  CHECK(json::dump(json::Value(umax)) == "18446744073709551615");
  CHECK(json::dump(json::Value(min)) == "-9223372036854775808");
  CHECK(json::dump(json::Value(std::numeric_limits<double>::quiet_NaN())) == "null");
  CHECK(json::dump(json::Value(std::numeric_limits<double>::infinity())) == "null");
}

TEST_CASE("json: readers return a fallback instead of throwing on the wrong type") {
  auto value = *json::parse(R"({"s":"x","n":5,"b":true,"a":[1],"o":{"k":1},"z":null})");
  CHECK(json::as_string(json::get(value, "s")) == "x");
  CHECK(json::as_string(json::get(value, "n")).empty());
  CHECK(json::as_int(json::get(value, "s"), -1) == -1);
  CHECK(json::as_bool(json::get(value, "n"), true) == true);
  CHECK(json::as_bool(json::get(value, "b")) == true);
  CHECK(json::as_double(json::get(value, "n")) == 5.0);
  CHECK(json::as_double(json::get(value, "s"), 1.5) == 1.5);
  CHECK(json::as_array(json::get(value, "a")).size() == 1);
  CHECK(json::as_array(json::get(value, "o")).empty());
  CHECK(json::as_object(json::get(value, "o")).size() == 1);
  CHECK(json::as_object(json::get(value, "a")).empty());
  CHECK(json::find(value, "missing") == nullptr);
  CHECK(json::get(value, "missing").is_null());
  CHECK(json::find(json::get(value, "a"), "k") == nullptr);  // an array has no members
  CHECK(json::find(json::Value("text"), "k") == nullptr);
  CHECK(json::find(value, "z") != nullptr);  // present, and null
}

TEST_CASE("json: dump never throws; invalid UTF-8 becomes U+FFFD") {
  json::Value value;
  value["bad"] = "a\xFF" "b\xC3";
  value["ctl"] = "\x01\t\n\"\\/\x7F";
  value["ok"] = "caf\xC3\xA9 \xF0\x9F\x98\x80";
  std::string text;
  CHECK_NOTHROW(text = json::dump(value));
  CHECK(text == "{\"bad\":\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD\",\"ctl\":\"\\u0001\\t\\n\\\"\\\\/\x7F\","
                "\"ok\":\"caf\xC3\xA9 \xF0\x9F\x98\x80\"}");
  CHECK(json::parse(text).has_value());  // what we write, we read back
}
