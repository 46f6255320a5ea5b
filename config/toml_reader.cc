#include "toml_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "suggest.h"

namespace deployctl::detail {
namespace {

constexpr std::size_t kQuoteLimit = 60;

std::string format_number(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

// Cuts text to at most limit bytes without splitting a UTF-8 sequence.
std::string_view cut(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

std::string quote_with(std::string_view text, char mark) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(1, mark);
  for (char c : cut(text, kQuoteLimit)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == mark || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    } else {
      out += c;
    }
  }
  if (text.size() > kQuoteLimit) out += "...";
  out += mark;
  return out;
}

std::string range_message(std::int64_t min, std::int64_t max, std::int64_t got) {
  const std::string bound = max >= std::numeric_limits<int>::max()
                                ? "at least " + std::to_string(min)
                                : "from " + std::to_string(min) + " to " + std::to_string(max);
  return "must be " + bound + ", got " + std::to_string(got);
}

std::string one_of(const std::vector<std::string_view>& choices) {
  std::string out;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += i + 1 == choices.size() ? " or " : ", ";
    out += quote(choices[i]);
  }
  return out;
}

}  // namespace

void Diagnostics::add(const toml::source_region& where, std::string key, std::string message) {
  add(static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), std::move(key),
      std::move(message));
}

void Diagnostics::add(int line, int column, std::string key, std::string message) {
  errors_.push_back(SpecError{file_, line, column, std::move(key), std::move(message)});
}

std::vector<SpecError> Diagnostics::take_sorted() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const SpecError& a, const SpecError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(errors_);
}

std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "string " + quote(node.as_string()->get());
    case toml::node_type::integer:
      return "integer " + std::to_string(node.as_integer()->get());
    case toml::node_type::floating_point:
      return "float " + format_number(node.as_floating_point()->get());
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "boolean true" : "boolean false";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string quote(std::string_view text) { return quote_with(text, '"'); }

std::string join_key(std::string_view parent, std::string_view key) {
  std::string out(parent);
  if (!out.empty()) out += '.';
  out += is_bare_key(key) ? std::string(key) : quote(key);
  return out;
}

std::string format_duration(Duration duration) {
  const std::int64_t ms = duration.count();
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::vector<std::pair<const toml::key*, const toml::node*>> entries_in_file_order(
    const toml::table& table) {
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [key, node] : table) entries.emplace_back(&key, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const toml::source_position& pa = a.first->source().begin;
    const toml::source_position& pb = b.first->source().begin;
    return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
  });
  return entries;
}

std::optional<std::string> read_string(const toml::node& node, const std::string& key_path,
                                       Diagnostics& diag) {
  if (const auto* text = node.as_string()) return text->get();
  diag.add(node.source(), key_path, "expected a string, got " + describe(node));
  return std::nullopt;
}

std::optional<std::int64_t> read_integer(const toml::node& node, const std::string& key_path,
                                         Diagnostics& diag, std::int64_t min, std::int64_t max) {
  const auto* integer = node.as_integer();
  if (!integer) {
    diag.add(node.source(), key_path, "expected an integer, got " + describe(node));
    return std::nullopt;
  }
  const std::int64_t value = integer->get();
  if (value < min || value > max) {
    diag.add(node.source(), key_path, range_message(min, max, value));
    return std::nullopt;
  }
  return value;
}

std::optional<Duration> read_duration(const toml::node& node, const std::string& key_path,
                                      Diagnostics& diag) {
  const auto* text = node.as_string();
  if (!text) {
    const std::string message =
        node.is_integer() ? "durations need a unit, e.g. \"500ms\" (got " + describe(node) + ")"
                          : "expected a duration such as \"500ms\" or \"2s\", got " +
                                describe(node);
    diag.add(node.source(), key_path, message);
    return std::nullopt;
  }
  std::string error;
  const std::optional<Duration> duration = parse_duration(text->get(), &error);
  if (!duration) {
    diag.add(node.source(), key_path, error);
  } else if (duration->count() == 0) {
    diag.add(node.source(), key_path, "must be greater than 0, got " + quote(text->get()));
    return std::nullopt;
  }
  return duration;
}

std::optional<std::uint64_t> read_size(const toml::node& node, const std::string& key_path,
                                       Diagnostics& diag) {
  if (const auto* integer = node.as_integer()) {
    if (integer->get() > 0) return static_cast<std::uint64_t>(integer->get());
    diag.add(node.source(), key_path,
             "must be greater than 0, got " + std::to_string(integer->get()));
    return std::nullopt;
  }
  const auto* text = node.as_string();
  if (!text) {
    diag.add(node.source(), key_path,
             "expected a size such as \"512MiB\" or a number of bytes, got " + describe(node));
    return std::nullopt;
  }
  std::string error;
  const std::optional<std::uint64_t> size = parse_size(text->get(), &error);
  if (!size) {
    diag.add(node.source(), key_path, error);
  } else if (*size == 0) {
    diag.add(node.source(), key_path, "must be greater than 0, got " + quote(text->get()));
    return std::nullopt;
  }
  return size;
}

TableReader::TableReader(const toml::table& table, std::string path, Diagnostics& diag,
                         std::vector<std::string_view> known)
    : table_(table), path_(std::move(path)), diag_(diag) {
  report_unknown_keys(known);
}

void TableReader::report_unknown_keys(const std::vector<std::string_view>& known) {
  for (const auto& [key, node] : entries_in_file_order(table_)) {
    const std::string_view name = key->str();
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string message = "unknown key " + quote_with(name, '\'');
    if (const auto suggestion = closest_match(name, known)) {
      message += "; did you mean '" + *suggestion + "'?";
    } else {
      message += "; known keys here: ";
      for (std::size_t i = 0; i < known.size(); ++i) {
        message += (i > 0 ? ", " : "") + std::string(known[i]);
      }
    }
    diag_.add(key->source(), key_path(name), std::move(message));
  }
}

void TableReader::error_at(std::string_view key, std::string message) {
  failed_.insert(std::string(key));
  diag_.add(find(key)->source(), key_path(key), std::move(message));
}

void TableReader::error_missing(std::string_view key, std::string message) {
  diag_.add(table_.source(), key_path(key), std::move(message));
}

template <typename T>
std::optional<T> TableReader::note(std::string_view key, std::optional<T> value) {
  if (!value) failed_.insert(std::string(key));
  return value;
}

std::optional<std::string> TableReader::string(std::string_view key) {
  const toml::node* node = find(key);
  if (!node) return std::nullopt;
  return note(key, read_string(*node, key_path(key), diag_));
}

std::optional<std::int64_t> TableReader::integer(std::string_view key, std::int64_t min,
                                                 std::int64_t max) {
  const toml::node* node = find(key);
  if (!node) return std::nullopt;
  return note(key, read_integer(*node, key_path(key), diag_, min, max));
}

std::optional<double> TableReader::number(std::string_view key, double min, double max) {
  const toml::node* node = find(key);
  if (!node) return std::nullopt;
  std::optional<double> value;
  if (const auto* integer = node->as_integer()) value = static_cast<double>(integer->get());
  if (const auto* floating = node->as_floating_point()) value = floating->get();
  if (!value) {
    error_at(key, "expected a number, got " + describe(*node));
  } else if (!(*value >= min && *value <= max)) {
    error_at(key, "must be from " + format_number(min) + " to " + format_number(max) + ", got " +
                      format_number(*value));
    value.reset();
  }
  return value;
}

std::optional<Duration> TableReader::duration(std::string_view key) {
  const toml::node* node = find(key);
  if (!node) return std::nullopt;
  return note(key, read_duration(*node, key_path(key), diag_));
}

std::optional<std::uint64_t> TableReader::size(std::string_view key) {
  const toml::node* node = find(key);
  if (!node) return std::nullopt;
  return note(key, read_size(*node, key_path(key), diag_));
}

std::optional<std::string> TableReader::choice(std::string_view key,
                                               const std::vector<std::string_view>& choices) {
  std::optional<std::string> value = string(key);
  if (!value || std::find(choices.begin(), choices.end(), *value) != choices.end()) return value;
  std::string message = "expected " + one_of(choices) + ", got " + quote(*value);
  if (const auto suggestion = closest_match(*value, choices)) {
    message += "; did you mean " + quote(*suggestion) + "?";
  }
  error_at(key, std::move(message));
  return std::nullopt;
}

const toml::table* TableReader::subtable(std::string_view key, std::string_view expected) {
  const toml::node* node = find(key);
  if (!node) return nullptr;
  if (const auto* table = node->as_table()) return table;
  error_at(key, "expected " + std::string(expected) + ", got " + describe(*node));
  return nullptr;
}

}  // namespace deployctl::detail
