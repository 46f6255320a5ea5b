// JSON for the management API (one JSON line per request), `status --json` and scale.json:
// nlohmann's ordered_json (objects keep insertion order) behind a few helpers that never throw.
//
// Values are built with nlohmann's own API (`v["key"] = 1`, `push_back`, `json::Array`). Values
// that came from outside are read only through the helpers below, which check the type and
// return a fallback instead of throwing nlohmann's type_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace deployctl::json {

using Value = nlohmann::ordered_json;
using Array = Value::array_t;
using Object = Value::object_t;  // iterates as pairs of (key, value) in insertion order

inline constexpr int kMaxDepth = 64;  // arrays/objects nested deeper than this fail to parse

// Readers: the value if it has that type, else the fallback (or an empty string/container).
const Value* find(const Value& value, std::string_view key);  // nullptr if absent or no object
const Value& get(const Value& value, std::string_view key);   // a null value if absent
const std::string& as_string(const Value& value);
bool as_bool(const Value& value, bool fallback = false);
double as_double(const Value& value, double fallback = 0);
// Integers in int64 range, and doubles that hold such an integer exactly.
std::int64_t as_int(const Value& value, std::int64_t fallback = 0);
const Array& as_array(const Value& value);
const Object& as_object(const Value& value);

struct ParseError {
  std::size_t offset = 0;  // byte offset into the text where the problem was found
  std::string message;
};

// Strict RFC 8259 (nlohmann's parser): the whole text must be one value, optionally surrounded
// by whitespace; invalid UTF-8, lone surrogates, raw control characters, comments, trailing
// commas, NaN and numbers that overflow a double are errors, and so is nesting deeper than
// kMaxDepth. Never throws (short of std::bad_alloc). Non-negative integers up to UINT64_MAX and
// negative ones down to INT64_MIN are kept exactly. Duplicate keys: the last value wins, at the
// first one's position. On failure returns nullopt and, if error is not null, fills it in.
std::optional<Value> parse(std::string_view text, ParseError* error = nullptr);

// Compact, one line, no trailing newline. Doubles keep a '.' or exponent and the shortest digits
// that round-trip; NaN and infinities are written as null; invalid UTF-8 in strings is replaced by
// U+FFFD, so dumping never throws (short of std::bad_alloc).
std::string dump(const Value& value);

}  // namespace deployctl::json
