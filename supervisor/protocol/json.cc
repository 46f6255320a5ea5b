#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

namespace deployctl::json {
namespace {

// The int64 a double holds exactly, if any (NaN, fractions and out-of-range values hold none).
std::optional<std::int64_t> exact_int(double d) {
  if (!(d >= -0x1p63 && d < 0x1p63)) return std::nullopt;
  auto i = static_cast<std::int64_t>(d);
  if (static_cast<double>(i) != d) return std::nullopt;
  return i;
}

// Length of the well-formed UTF-8 sequence (RFC 3629) starting at s[i], or 0 if there is none.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char lead = byte(0), low = 0x80, high = 0xBF;
  std::size_t length = 0;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // UTF-16 surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < length || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t k = 2; k < length; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return 0;
  }
  return length;
}

void append_utf8(std::string& out, std::uint32_t code_point) {
  auto put = [&](std::uint32_t bits) { out += static_cast<char>(bits); };
  if (code_point < 0x80) {
    put(code_point);
  } else if (code_point < 0x800) {
    put(0xC0 | (code_point >> 6));
    put(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    put(0xE0 | (code_point >> 12));
    put(0x80 | ((code_point >> 6) & 0x3F));
    put(0x80 | (code_point & 0x3F));
  } else {
    put(0xF0 | (code_point >> 18));
    put(0x80 | ((code_point >> 12) & 0x3F));
    put(0x80 | ((code_point >> 6) & 0x3F));
    put(0x80 | (code_point & 0x3F));
  }
}

// The short escapes: "\\n" stands for '\n', and so on. dump() leaves '/' unescaped.
constexpr std::string_view kEscapeLetters = "\"\\/bfnrt";
constexpr std::string_view kEscapedChars = "\"\\/\b\f\n\r\t";

// Recursive descent over the text; on the first error records it and returns false.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::optional<Value> parse_document() {
    Value value;
    if (!parse_value(value)) return std::nullopt;
    skip_whitespace();
    if (pos_ < text_.size()) {
      expected("end of input after the value");
      return std::nullopt;
    }
    return value;
  }

  const ParseError& error() const { return error_; }

 private:
  bool fail(std::size_t offset, std::string message) {
    error_ = {offset, std::move(message)};
    return false;
  }

  // Fails at the current position, saying what was found instead of `what`.
  bool expected(const std::string& what) {
    if (pos_ >= text_.size()) return fail(pos_, "unexpected end of input; expected " + what);
    auto c = static_cast<unsigned char>(text_[pos_]);
    std::string found(1, static_cast<char>(c));
    if (c < 0x20 || c >= 0x7F) {
      char hex[8];
      auto end = std::to_chars(hex, hex + sizeof hex, static_cast<unsigned>(c), 16).ptr;
      found = "byte 0x" + std::string(hex, end);
    }
    return fail(pos_, "unexpected '" + found + "'; expected " + what);
  }

  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  bool at_digit() const { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; }

  void skip_whitespace() {
    while (at(' ') || at('\t') || at('\n') || at('\r')) ++pos_;
  }

  bool parse_value(Value& out) {
    skip_whitespace();
    if (at('{')) return parse_object(out);
    if (at('[')) return parse_array(out);
    if (at('"')) {
      std::string s;
      if (!parse_string(s)) return false;
      out = Value(std::move(s));
      return true;
    }
    if (at('-') || at_digit()) return parse_number(out);
    if (at('t')) return parse_literal("true", Value(true), out);
    if (at('f')) return parse_literal("false", Value(false), out);
    if (at('n')) return parse_literal("null", Value(), out);
    return expected("a value");
  }

  bool parse_literal(std::string_view word, Value value, Value& out) {
    if (text_.substr(pos_, word.size()) != word) {
      return fail(pos_, "invalid literal; expected '" + std::string(word) + "'");
    }
    pos_ += word.size();
    out = std::move(value);
    return true;
  }

  // Parses from the opening bracket to `close`, calling parse_item for each comma-separated
  // item; `where` names the container in messages.
  template <typename ParseItem>
  bool parse_items(char close, const std::string& where, ParseItem parse_item) {
    if (++depth_ > kMaxDepth) {
      return fail(pos_, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    ++pos_;
    skip_whitespace();
    for (bool first = true; !at(close); first = false) {
      if (!first) {
        if (!at(',')) return expected("',' or '" + std::string(1, close) + "' in " + where);
        ++pos_;
        skip_whitespace();
        if (at(close)) return fail(pos_, "trailing comma in " + where);
      }
      if (!parse_item()) return false;
      skip_whitespace();
    }
    ++pos_;
    --depth_;
    return true;
  }

  bool parse_array(Value& out) {
    Array items;
    if (!parse_items(']', "array", [&] { return parse_value(items.emplace_back()); })) {
      return false;
    }
    out = Value(std::move(items));
    return true;
  }

  bool parse_object(Value& out) {
    Object members;
    if (!parse_items('}', "object", [&] { return parse_member(members); })) return false;
    out = Value(std::move(members));
    return true;
  }

  bool parse_member(Object& members) {
    std::string key;
    if (!at('"')) return expected("a string key");
    if (!parse_string(key)) return false;
    skip_whitespace();
    if (!at(':')) return expected("':' after object key");
    ++pos_;
    return parse_value(members.emplace_back(std::move(key), nullptr).second);
  }

  bool skip_digits() {
    std::size_t start = pos_;
    while (at_digit()) ++pos_;
    return pos_ > start;
  }

  bool parse_number(Value& out) {
    const std::size_t start = pos_;
    if (at('-')) ++pos_;
    if (at('0')) {
      ++pos_;
      if (at_digit()) return fail(pos_, "leading zeros are not allowed in a number");
    } else if (!skip_digits()) {
      return expected("a digit");
    }
    bool integral = true;
    if (at('.')) {
      ++pos_;
      integral = false;
      if (!skip_digits()) return expected("a digit after the decimal point");
    }
    if (at('e') || at('E')) {
      ++pos_;
      integral = false;
      if (at('+') || at('-')) ++pos_;
      if (!skip_digits()) return expected("a digit in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (std::int64_t i = 0; integral && std::from_chars(first, last, i).ec == std::errc()) {
      out = Value(i);
      return true;
    }
    double d = 0;
    if (std::from_chars(first, last, d).ec != std::errc() || !std::isfinite(d)) {
      return fail(start, "number out of range for a double");
    }
    out = Value(d);
    return true;
  }

  bool parse_string(std::string& out) {
    const std::size_t start = pos_++;
    while (true) {
      if (pos_ >= text_.size()) return fail(start, "unterminated string; missing closing '\"'");
      auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        if (!parse_escape(out)) return false;
        continue;
      }
      if (c < 0x20) return fail(pos_, "raw control character in string; escape it as \\u00XX");
      std::size_t length = utf8_sequence_length(text_, pos_);
      if (length == 0) return fail(pos_, "invalid UTF-8 in string");
      out.append(text_.substr(pos_, length));
      pos_ += length;
    }
  }

  bool parse_escape(std::string& out) {
    const std::size_t start = pos_++;
    char letter = pos_ < text_.size() ? text_[pos_++] : '\0';
    if (letter == 'u') return parse_unicode_escape(start, out);
    std::size_t k = kEscapeLetters.find(letter);
    if (k == std::string_view::npos) {
      return fail(start,
                  "invalid escape; expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
    }
    out += kEscapedChars[k];
    return true;
  }

  bool read_hex4(std::size_t escape_start, std::uint32_t& unit) {
    const char* first = text_.data() + pos_;
    const char* last = first + std::min<std::size_t>(4, text_.size() - pos_);
    if (last - first != 4 || std::from_chars(first, last, unit, 16).ptr != last) {
      return fail(escape_start, "\\u escape needs 4 hex digits");
    }
    pos_ += 4;
    return true;
  }

  // After "\u" at escape_start; a high surrogate must be followed by an escaped low surrogate.
  bool parse_unicode_escape(std::size_t escape_start, std::string& out) {
    std::uint32_t unit = 0;
    if (!read_hex4(escape_start, unit)) return false;
    if (unit >= 0xDC00 && unit <= 0xDFFF)
      return fail(escape_start, "lone low surrogate in \\u escape");
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      const std::size_t low_start = pos_;
      std::uint32_t low = 0;
      if (text_.substr(pos_, 2) != "\\u")
        return fail(escape_start, "high surrogate not followed by a \\u low surrogate");
      pos_ += 2;
      if (!read_hex4(low_start, low)) return false;
      if (low < 0xDC00 || low > 0xDFFF)
        return fail(escape_start, "high surrogate not followed by a \\u low surrogate");
      unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, unit);
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  ParseError error_;
};

void write_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t length = utf8_sequence_length(s, i);
    std::size_t k = c == '/' ? std::string_view::npos : kEscapedChars.find(static_cast<char>(c));
    if (k != std::string_view::npos) {
      out += '\\';
      out += kEscapeLetters[k];
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD for each byte that starts no valid sequence
      length = 1;
    } else {
      out.append(s.substr(i, length));
    }
    i += length;
  }
  out += '"';
}

void write_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buffer[32];
  auto end = std::to_chars(buffer, buffer + sizeof buffer, d).ptr;
  std::string_view digits(buffer, static_cast<std::size_t>(end - buffer));
  out += digits;
  if (digits.find_first_of(".e") == std::string_view::npos) out += ".0";
}

}  // namespace

Value::Value() : data_(nullptr) {}
Value::Value(std::nullptr_t) : data_(nullptr) {}
Value::Value(bool b) : data_(b) {}
Value::Value(int n) : data_(std::int64_t{n}) {}
Value::Value(long n) : data_(std::int64_t{n}) {}
Value::Value(long long n) : data_(static_cast<std::int64_t>(n)) {}
Value::Value(unsigned n) : data_(std::int64_t{n}) {}
Value::Value(unsigned long n) : Value(static_cast<unsigned long long>(n)) {}
Value::Value(unsigned long long n) {
  if (n <= static_cast<unsigned long long>(INT64_MAX)) {
    data_ = static_cast<std::int64_t>(n);
  } else {
    data_ = static_cast<double>(n);
  }
}
Value::Value(double d) : data_(d) {}
Value::Value(const char* s) : data_(std::string(s)) {}
Value::Value(std::string s) : data_(std::move(s)) {}
Value::Value(std::string_view s) : data_(std::string(s)) {}
Value::Value(Array a) : data_(std::move(a)) {}
Value::Value(Object o) : data_(std::move(o)) {}

bool Value::is_null() const { return std::holds_alternative<std::nullptr_t>(data_); }
bool Value::is_bool() const { return std::holds_alternative<bool>(data_); }
bool Value::is_number() const { return is_integer() || std::holds_alternative<double>(data_); }
bool Value::is_integer() const { return std::holds_alternative<std::int64_t>(data_); }
bool Value::is_string() const { return std::holds_alternative<std::string>(data_); }
bool Value::is_array() const { return std::holds_alternative<Array>(data_); }
bool Value::is_object() const { return std::holds_alternative<Object>(data_); }

bool Value::as_bool(bool fallback) const {
  const bool* b = std::get_if<bool>(&data_);
  return b ? *b : fallback;
}

double Value::as_double(double fallback) const {
  if (const auto* i = std::get_if<std::int64_t>(&data_)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&data_)) return *d;
  return fallback;
}

std::int64_t Value::as_int(std::int64_t fallback) const {
  if (const auto* i = std::get_if<std::int64_t>(&data_)) return *i;
  if (const auto* d = std::get_if<double>(&data_)) return exact_int(*d).value_or(fallback);
  return fallback;
}

const std::string& Value::as_string() const {
  static const std::string empty;
  const auto* s = std::get_if<std::string>(&data_);
  return s ? *s : empty;
}

const Array& Value::as_array() const {
  static const Array empty;
  const auto* a = std::get_if<Array>(&data_);
  return a ? *a : empty;
}

const Object& Value::as_object() const {
  static const Object empty;
  const auto* o = std::get_if<Object>(&data_);
  return o ? *o : empty;
}

Array& Value::array() {
  if (!is_array()) data_ = Array();
  return std::get<Array>(data_);
}

Object& Value::object() {
  if (!is_object()) data_ = Object();
  return std::get<Object>(data_);
}

const Value* Value::find(std::string_view key) const {
  const Object& members = as_object();
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (it->first == key) return &it->second;
  }
  return nullptr;
}

Value& Value::operator[](std::string_view key) {
  Object& members = object();
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (it->first == key) return it->second;
  }
  return members.emplace_back(std::string(key), Value()).second;
}

void Value::push_back(Value v) { array().push_back(std::move(v)); }

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number() && a.is_integer() != b.is_integer()) {
    const Value& integer = a.is_integer() ? a : b;
    const Value& floating = a.is_integer() ? b : a;
    return exact_int(floating.as_double()) == integer.as_int();
  }
  return a.data_ == b.data_;
}

namespace {

void write_value(std::string& out, const Value& value) {
  if (value.is_null()) {
    out += "null";
  } else if (value.is_bool()) {
    out += value.as_bool() ? "true" : "false";
  } else if (value.is_integer()) {
    out += std::to_string(value.as_int());
  } else if (value.is_number()) {
    write_double(out, value.as_double());
  } else if (value.is_string()) {
    write_string(out, value.as_string());
  } else if (value.is_array()) {
    out += '[';
    for (const Value& item : value.as_array()) {
      if (out.back() != '[') out += ',';
      write_value(out, item);
    }
    out += ']';
  } else {
    out += '{';
    for (const auto& [key, member] : value.as_object()) {
      if (out.back() != '{') out += ',';
      write_string(out, key);
      out += ':';
      write_value(out, member);
    }
    out += '}';
  }
}

}  // namespace

std::optional<Value> parse(std::string_view text, ParseError* error) {
  Parser parser(text);
  std::optional<Value> value = parser.parse_document();
  if (!value && error) *error = parser.error();
  return value;
}

std::string dump(const Value& value) {
  std::string out;
  write_value(out, value);
  return out;
}

}  // namespace deployctl::json
