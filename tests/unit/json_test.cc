#include "json.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace json = deployctl::json;
using json::Value;
using namespace std::string_literals;

namespace {

// dump(parse(text)); fails the test if text does not parse.
std::string reformat(std::string_view text) {
  json::ParseError error;
  auto value = json::parse(text, &error);
  INFO("text: ", text, " error at ", error.offset, ": ", error.message);
  REQUIRE(value.has_value());
  return json::dump(*value);
}

// The error parse() reports for text; fails the test if text parses.
json::ParseError error_of(std::string_view text) {
  json::ParseError error;
  auto value = json::parse(text, &error);
  INFO("text: ", text);
  REQUIRE_FALSE(value.has_value());
  CHECK_FALSE(error.message.empty());
  return error;
}

void check_error(std::string_view text, std::size_t offset, std::string_view message_part) {
  json::ParseError error = error_of(text);
  INFO("text: ", text, " message: ", error.message);
  CHECK(error.offset == offset);
  CHECK(error.message.find(message_part) != std::string::npos);
}

std::string nested(int depth, std::string_view open, std::string_view inner,
                   std::string_view close) {
  std::string text;
  for (int i = 0; i < depth; ++i) text += open;
  text += inner;
  for (int i = 0; i < depth; ++i) text += close;
  return text;
}

}  // namespace

TEST_CASE("json: compact documents round-trip byte for byte") {
  for (std::string_view text :
       {"null", "true", "false", "0", "-1", "[]", "{}", "\"\"", "12345678901234", "0.1", "1.0",
        "-0.0", "1e+300", "5e-324", "-2.5", "[[],{},[null]]",
        "{\"a\":[1,2.5,\"x\",null,true],\"b\":{}}", "{\"z\":1,\"a\":2,\"z\":3}",
        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\""}) {
    CHECK(reformat(text) == text);
  }
}

TEST_CASE("json: whitespace around and inside values is accepted and dropped") {
  CHECK(reformat(" \t\r\n[ 1 ,\n\t2 ] \r\n") == "[1,2]");
  CHECK(reformat("{ \"a\" : { } , \"b\" :[ ] }") == "{\"a\":{},\"b\":[]}");
}

TEST_CASE("json: building values keeps order and finds the last duplicate key") {
  Value v;
  v["name"] = "web";
  v["replicas"] = 3;
  v["tags"].push_back("a");
  v["tags"].push_back(Value(json::Object{{"k", nullptr}}));
  v.object().emplace_back("replicas", 4);
  CHECK(json::dump(v) ==
        "{\"name\":\"web\",\"replicas\":3,\"tags\":[\"a\",{\"k\":null}],\"replicas\":4}");
  REQUIRE(v.find("replicas") != nullptr);
  CHECK(v.find("replicas")->as_int() == 4);
  v["replicas"] = 5;  // assigns the last one too
  CHECK(v.as_object()[1].second.as_int() == 3);
  CHECK(v.find("replicas")->as_int() == 5);
  CHECK(v.find("missing") == nullptr);
  CHECK(Value(1).find("x") == nullptr);
  CHECK(json::parse("{\"a\":1,\"a\":2}")->find("a")->as_int() == 2);
}

TEST_CASE("json: readers return the fallback for other types") {
  CHECK(Value(true).as_bool() == true);
  CHECK(Value(1).as_bool(true) == true);
  CHECK(Value(3.0).as_int() == 3);
  CHECK(Value(1.5).as_int(-1) == -1);
  CHECK(Value(1e300).as_int(-1) == -1);
  CHECK(Value(std::numeric_limits<double>::quiet_NaN()).as_int(-1) == -1);
  CHECK(Value("7").as_int(-1) == -1);
  CHECK(Value(7).as_double() == 7.0);
  CHECK(Value("x").as_double(2.5) == 2.5);
  CHECK(Value(7).as_string().empty());
  CHECK(Value("x").as_array().empty());
  CHECK(Value().as_object().empty());
  CHECK(Value(std::string_view("sv")).as_string() == "sv");
  CHECK(Value(std::string("s")).is_string());
  CHECK(Value(nullptr).is_null());
}

TEST_CASE("json: writers convert null and replace other types") {
  Value v;
  v.push_back(1);
  CHECK(v.is_array());
  Value s("text");
  s["k"] = true;  // precondition broken: the string is replaced by an object
  CHECK(json::dump(s) == "{\"k\":true}");
  Value o;
  o.object();
  CHECK(json::dump(o) == "{}");
}

TEST_CASE("json: equality compares numbers by value and containers structurally") {
  CHECK(Value(1) == Value(1.0));
  CHECK(Value(1) != Value(1.5));
  CHECK(Value(INT64_MAX) != Value(9223372036854775807.0));  // the double is 2^63
  CHECK(Value("1") != Value(1));
  CHECK(Value() == Value(nullptr));
  CHECK(Value(false) != Value());
  CHECK(*json::parse("[1,{\"a\":[2]}]") ==
        Value(json::Array{1, json::Object{{"a", json::Array{2}}}}));
  CHECK(*json::parse("{\"a\":1,\"b\":2}") != *json::parse("{\"b\":2,\"a\":1}"));
}

TEST_CASE("json: integers at the int64 edges stay exact; beyond them they become doubles") {
  auto max = json::parse("9223372036854775807");
  REQUIRE(max);
  CHECK(max->is_integer());
  CHECK(max->as_int() == INT64_MAX);
  auto min = json::parse("-9223372036854775808");
  REQUIRE(min);
  CHECK(min->as_int() == INT64_MIN);
  CHECK(json::dump(*min) == "-9223372036854775808");

  auto above = json::parse("9223372036854775808");
  REQUIRE(above);
  CHECK_FALSE(above->is_integer());
  CHECK(above->is_number());
  CHECK(above->as_int(-1) == -1);
  CHECK(above->as_double() == 9223372036854775808.0);
  auto below = json::parse("-9223372036854775809");
  REQUIRE(below);
  CHECK_FALSE(below->is_integer());
  CHECK(below->as_int(1) == INT64_MIN);  // the nearest double is -2^63, in range

  CHECK(json::dump(Value(std::numeric_limits<unsigned long long>::max())) ==
        "18446744073709551616.0");
  CHECK(json::dump(Value(static_cast<unsigned long>(INT64_MAX))) == "9223372036854775807");
  CHECK(json::dump(Value(static_cast<long long>(INT64_MIN))) == "-9223372036854775808");
  CHECK(json::dump(Value(4294967295u)) == "4294967295");
  CHECK(json::parse("-0")->is_integer());
  CHECK(json::parse("1E2")->as_double() == 100.0);
  CHECK(reformat("1E2") == "100.0");
  CHECK(reformat("1.5e-3") == "0.0015");
}

TEST_CASE("json: doubles dump with round-trip digits and non-finite ones as null") {
  for (double d : {0.1, 1.0 / 3, -2.2250738585072014e-308, 4.9406564584124654e-324,
                   1.7976931348623157e308, 123456789.125, 1e21}) {
    auto back = json::parse(json::dump(Value(d)));
    REQUIRE(back);
    CHECK_FALSE(back->is_integer());
    CHECK(back->as_double() == d);
  }
  CHECK(json::dump(Value(std::numeric_limits<double>::quiet_NaN())) == "null");
  CHECK(json::dump(Value(std::numeric_limits<double>::infinity())) == "null");
  CHECK(json::dump(Value(-std::numeric_limits<double>::infinity())) == "null");
}

TEST_CASE("json: string escapes decode, and dump escapes only what it must") {
  auto v = json::parse(R"("\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\u0000")");
  REQUIRE(v);
  CHECK(v->as_string() == "\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\0"s);
  CHECK(json::dump(*v) ==
        std::string(R"("\"\\/\b\f\n\r\tA)") + "\xC3\xA9\xE2\x82\xAC" + R"(\u0000")");
  CHECK(json::dump(Value(std::string("\x01\x1f\x7f"))) == "\"\\u0001\\u001f\x7f\"");
  CHECK(json::dump(Value(json::Object{{"a\"b", 1}})) == R"({"a\"b":1})");
}

TEST_CASE("json: surrogate pairs become UTF-8 and lone surrogates are errors") {
  CHECK(json::parse(R"("\ud83d\ude00")")->as_string() == "\xF0\x9F\x98\x80");
  CHECK(json::parse(R"("\uD800\uDC00")")->as_string() == "\xF0\x90\x80\x80");
  CHECK(json::parse(R"("\uDBFF\uDFFF")")->as_string() == "\xF4\x8F\xBF\xBF");
  check_error(R"("\ud83d")", 1, "high surrogate");
  check_error(R"("ab\ud83d\u0041")", 3, "high surrogate");
  check_error(R"("\ud83dx")", 1, "high surrogate");
  check_error(R"("\ude00")", 1, "lone low surrogate");
  check_error(R"("\ud83d\uZZZZ")", 7, "4 hex digits");
}

TEST_CASE("json: invalid UTF-8 in input is an error at the offending byte") {
  check_error("\"\xFF\"", 1, "invalid UTF-8");
  check_error("\"a\x80\"", 2, "invalid UTF-8");             // stray continuation byte
  check_error("\"\xC0\xAF\"", 1, "invalid UTF-8");          // overlong '/'
  check_error("\"\xE0\x80\xAF\"", 1, "invalid UTF-8");      // overlong, 3 bytes
  check_error("\"\xED\xA0\x80\"", 1, "invalid UTF-8");      // UTF-16 surrogate
  check_error("\"\xF4\x90\x80\x80\"", 1, "invalid UTF-8");  // above U+10FFFF
  check_error("\"\xE2\x82\"", 1, "invalid UTF-8");          // truncated
  check_error("\"\xE2\x82", 1, "invalid UTF-8");            // truncated at end of input
  check_error(
      "\xEF\xBB\xBF"
      "1",
      0, "byte 0xef");  // no BOM
}

TEST_CASE("json: invalid UTF-8 given to Value is dumped as U+FFFD per bad byte") {
  const std::string kReplacement = "\xEF\xBF\xBD";
  CHECK(json::dump(Value(std::string("a\xFF"
                                     "b"))) == "\"a" + kReplacement + "b\"");
  CHECK(json::dump(Value(std::string("\xE2\x82"))) == "\"" + kReplacement + kReplacement + "\"");
  CHECK(json::dump(Value(std::string("\xED\xA0\x80"))) ==
        "\"" + kReplacement + kReplacement + kReplacement + "\"");
  CHECK(json::dump(Value(std::string("ok \xE2\x82\xAC"))) == "\"ok \xE2\x82\xAC\"");
  json::Object with_bad_key{{"\xC3", 1}};
  CHECK(json::dump(Value(with_bad_key)) == "{\"" + kReplacement + "\":1}");
  CHECK(json::parse(json::dump(Value(std::string("\xFF\xFE\n\x01")))).has_value());
}

TEST_CASE("json: each syntax error is reported at its offset") {
  check_error("", 0, "unexpected end of input; expected a value");
  check_error("  ", 2, "end of input");
  check_error("tru", 0, "invalid literal");
  check_error("nul", 0, "expected 'null'");
  check_error("True", 0, "unexpected 'T'");
  check_error("'a'", 0, "unexpected '''");
  check_error("[1,]", 3, "trailing comma in array");
  check_error("{\"a\":1,}", 7, "trailing comma in object");
  check_error("[1 2]", 3, "expected ',' or ']'");
  check_error("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
  check_error("{\"a\" 1}", 5, "expected ':'");
  check_error("{1:2}", 1, "a string key");
  check_error("[,1]", 1, "expected a value");
  check_error("[1", 2, "end of input");
  check_error("{\"a\":1", 6, "end of input");
  check_error("{\"a\":", 5, "end of input; expected a value");
  check_error("[1] x", 4, "expected end of input after the value");
  check_error("1 2", 2, "end of input after the value");
  check_error(std::string_view("[1]\0", 4), 3, "byte 0x0");
  check_error("// c\n1", 0, "unexpected '/'");
  check_error("/* c */ 1", 0, "unexpected '/'");
}

TEST_CASE("json: malformed numbers are errors") {
  check_error("01", 1, "leading zeros");
  check_error("-01", 2, "leading zeros");
  check_error("00", 1, "leading zeros");
  check_error("-", 1, "expected a digit");
  check_error("-a", 1, "expected a digit");
  check_error("1.", 2, "after the decimal point");
  check_error("1.e5", 2, "after the decimal point");
  check_error("1e", 2, "in the exponent");
  check_error("1e+", 3, "in the exponent");
  check_error(".5", 0, "unexpected '.'");
  check_error("+1", 0, "unexpected '+'");
  check_error("0x10", 1, "end of input after the value");
  check_error("1e400", 0, "out of range");
  check_error("[-1e400]", 1, "out of range");
  check_error("1e-400", 0, "out of range");
  check_error("NaN", 0, "unexpected 'N'");
  check_error("Infinity", 0, "unexpected 'I'");
  check_error("-Infinity", 1, "expected a digit");
}

TEST_CASE("json: malformed strings are errors") {
  check_error("\"abc", 0, "unterminated string");
  check_error("[\"a\nb\"]", 3, "raw control character");
  check_error("\"\t\"", 1, "raw control character");
  check_error(R"("\x")", 1, "invalid escape");
  check_error(R"("\')", 1, "invalid escape");
  check_error("\"\\", 1, "invalid escape");
  check_error(R"("\u12")", 1, "4 hex digits");
  check_error(R"("\u12G4")", 1, "4 hex digits");
  check_error(R"("\u+123")", 1, "4 hex digits");
  check_error("\"\\u12", 1, "4 hex digits");
}

TEST_CASE("json: nesting is limited to 64 levels") {
  CHECK(json::parse(nested(64, "[", "1", "]")).has_value());
  CHECK(json::parse(nested(64, "{\"a\":", "1", "}")).has_value());
  CHECK(json::parse(nested(32, "[{\"a\":", "1", "}]")).has_value());
  check_error(nested(65, "[", "1", "]"), 64, "nesting deeper than 64");
  check_error(nested(65, "{\"a\":", "1", "}"), 5 * 64, "nesting deeper than 64");
  check_error(std::string(1'000'000, '['), 64, "nesting deeper than 64");  // no stack overflow
  // Depth is nesting, not the number of containers.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) wide += nested(60, "[", "", "]") + ",";
  wide += "0]";
  CHECK(json::parse(wide).has_value());
}

TEST_CASE("json: every prefix and every single-byte change of a document parses or fails cleanly") {
  const std::string doc =
      R"({"a":[1,-2.5e3,true,false,null],"s":"x\u00e9\ud83d\ude00\n","o":{"k":[{}]}})";
  for (std::size_t n = 0; n < doc.size(); ++n) {
    CHECK_FALSE(json::parse(doc.substr(0, n)).has_value());
  }
  for (std::size_t i = 0; i < doc.size(); ++i) {
    for (int b = 0; b < 256; ++b) {
      std::string changed = doc;
      changed[i] = static_cast<char>(b);
      json::ParseError error;
      auto value = json::parse(changed, &error);
      if (value) {
        CHECK(json::parse(json::dump(*value)) == value);
      } else {
        CHECK(error.offset <= changed.size());
      }
    }
  }
}
