// A small JSON value, parser and writer for the management API (JSON lines) and `status --json`.
//
// parse() is strict RFC 8259 and meant for untrusted input: it never throws (short of
// std::bad_alloc), rejects invalid UTF-8, lone surrogates, raw control characters in strings,
// comments, trailing commas, NaN/Infinity and leading zeros, and limits nesting to kMaxDepth.
// Integers that fit in int64 are kept exactly; other numbers are doubles, and a number that does
// not fit in a double (e.g. 1e400) is an error. Objects keep insertion order and duplicate keys;
// lookup finds the last one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace deployctl::json {

inline constexpr int kMaxDepth = 64;  // arrays/objects nested deeper than this fail to parse

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;

class Value {
 public:
  Value();  // null
  Value(std::nullptr_t);
  Value(bool b);
  Value(int n);
  Value(long n);
  Value(long long n);
  Value(unsigned n);
  Value(unsigned long n);
  Value(unsigned long long n);  // above INT64_MAX it is stored as a double
  Value(double d);              // NaN and infinities are kept, and dumped as null
  Value(const char* s);         // s must not be null
  Value(std::string s);         // any bytes; invalid UTF-8 is replaced by U+FFFD when dumped
  Value(std::string_view s);
  Value(Array a);
  Value(Object o);

  bool is_null() const;
  bool is_bool() const;
  bool is_number() const;
  bool is_integer() const;  // a number stored exactly as an int64
  bool is_string() const;
  bool is_array() const;
  bool is_object() const;

  // Readers: the value if it has that type, else the fallback (or an empty container).
  bool as_bool(bool fallback = false) const;
  double as_double(double fallback = 0) const;
  std::int64_t as_int(std::int64_t fallback = 0) const;  // integral numbers in int64 range only
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Writers. Precondition: the value is null (converted) or already of that type; any other
  // value is replaced by an empty container.
  Array& array();
  Object& object();
  Value& operator[](std::string_view key);  // the last member named key, appended if absent
  void push_back(Value v);

  const Value* find(std::string_view key) const;  // the last member named key, or nullptr

  // Structural equality: arrays and objects element by element in order; numbers by value, so
  // Value(1) == Value(1.0).
  friend bool operator==(const Value& a, const Value& b);

 private:
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> data_;
};

struct ParseError {
  std::size_t offset = 0;  // byte offset into the text where the problem was found
  std::string message;
};

// The whole text must be one value, optionally surrounded by whitespace. On failure returns
// nullopt and, if error is not null, fills it in.
std::optional<Value> parse(std::string_view text, ParseError* error = nullptr);

// Compact, one line, no trailing newline. Doubles keep a '.' or exponent so they parse back as
// doubles, with the shortest digits that round-trip; NaN and infinities are written as null.
std::string dump(const Value& value);

}  // namespace deployctl::json
