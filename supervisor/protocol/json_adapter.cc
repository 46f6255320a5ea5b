// The non-throwing edge around nlohmann-json (json.h): exceptions never leave this file, and
// none is thrown on any input: parse errors arrive through the SAX interface as values.
#include <limits>

#include "json.h"

namespace deployctl::json {
namespace {

// A SAX pass that builds nothing: it checks the nesting depth and records the first error, which
// nlohmann hands over as an exception object without throwing it.
class Checker : public nlohmann::json_sax<Value> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool key(string_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(); }
  bool end_object() override { return leave(); }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override { return leave(); }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) override {
    std::string_view text = error.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the tag.
    if (auto tag_end = text.find("] "); text.starts_with("[json.") && tag_end != text.npos) {
      text.remove_prefix(tag_end + 2);
    }
    error_ = {position > 0 ? position - 1 : 0, std::string(text)};
    return false;
  }

  const ParseError& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= kMaxDepth) return true;
    error_ = {0, "nested deeper than " + std::to_string(kMaxDepth) + " arrays/objects"};
    return false;
  }
  bool leave() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  ParseError error_;
};

// The int64 a double holds exactly, if any (NaN, fractions and out-of-range values hold none).
std::optional<std::int64_t> exact_int(double d) {
  if (!(d >= -0x1p63 && d < 0x1p63)) return std::nullopt;
  auto i = static_cast<std::int64_t>(d);
  if (static_cast<double>(i) != d) return std::nullopt;
  return i;
}

}  // namespace

const Value* find(const Value& value, std::string_view key) {
  if (!value.is_object()) return nullptr;
  auto it = value.find(std::string(key));
  return it == value.end() ? nullptr : &*it;
}

const Value& get(const Value& value, std::string_view key) {
  static const Value null;
  const Value* found = find(value, key);
  return found ? *found : null;
}

const std::string& as_string(const Value& value) {
  static const std::string empty;
  const auto* s = value.get_ptr<const Value::string_t*>();
  return s ? *s : empty;
}

bool as_bool(const Value& value, bool fallback) {
  const auto* b = value.get_ptr<const Value::boolean_t*>();
  return b ? *b : fallback;
}

double as_double(const Value& value, double fallback) {
  if (const auto* u = value.get_ptr<const Value::number_unsigned_t*>())
    return static_cast<double>(*u);
  if (const auto* i = value.get_ptr<const Value::number_integer_t*>())
    return static_cast<double>(*i);
  if (const auto* d = value.get_ptr<const Value::number_float_t*>()) return *d;
  return fallback;
}

std::int64_t as_int(const Value& value, std::int64_t fallback) {
  if (const auto* u = value.get_ptr<const Value::number_unsigned_t*>()) {
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    return *u <= kMax ? static_cast<std::int64_t>(*u) : fallback;
  }
  if (const auto* i = value.get_ptr<const Value::number_integer_t*>()) return *i;
  if (const auto* d = value.get_ptr<const Value::number_float_t*>()) {
    return exact_int(*d).value_or(fallback);
  }
  return fallback;
}

const Array& as_array(const Value& value) {
  static const Array empty;
  const auto* a = value.get_ptr<const Value::array_t*>();
  return a ? *a : empty;
}

const Object& as_object(const Value& value) {
  static const Object empty;
  const auto* o = value.get_ptr<const Value::object_t*>();
  return o ? *o : empty;
}

std::optional<Value> parse(std::string_view text, ParseError* error) {
  Checker checker;
  bool valid = Value::sax_parse(text, &checker, nlohmann::json::input_format_t::json,
                                /*strict=*/true, /*ignore_comments=*/false);
  Value value;
  if (valid) value = Value::parse(text, nullptr, /*allow_exceptions=*/false);
  if (valid && !value.is_discarded()) return value;
  if (error) *error = valid ? ParseError{0, "invalid JSON"} : checker.error();
  return std::nullopt;
}

std::string dump(const Value& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Value::error_handler_t::replace);
}

}  // namespace deployctl::json
