// Internal to config/: reading toml++ nodes into typed values while collecting SpecErrors.
// Every reader reports a bad value to Diagnostics and returns nullopt; absent keys return
// nullopt without an error, so callers keep the default from spec.h.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "load.h"

namespace deployctl::detail {

// The errors of one spec file.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void add(const toml::source_region& where, std::string key, std::string message);
  void add(int line, int column, std::string key, std::string message);
  bool empty() const { return errors_.empty(); }
  std::vector<SpecError> take_sorted();  // by (line, column), then in order of adding

 private:
  std::string file_;
  std::vector<SpecError> errors_;
};

// For messages: "integer 5", "string \"abc\"", "an array", "a table", "a date".
std::string describe(const toml::node& node);

// text in double quotes, control characters escaped, cut after 60 characters.
std::string quote(std::string_view text);

// "parent.key"; keys outside [A-Za-z0-9_-] are quoted as TOML would ("services.\"a b\"").
std::string join_key(std::string_view parent, std::string_view key);

// Shortest exact form: "1h", "90s", "1500ms".
std::string format_duration(Duration duration);

// A table's entries in the order they appear in the file (toml++ keeps keys sorted).
std::vector<std::pair<const toml::key*, const toml::node*>> entries_in_file_order(
    const toml::table& table);

// Single-value readers: the node is the value of the key at key_path.
std::optional<std::string> read_string(const toml::node& node, const std::string& key_path,
                                       Diagnostics& diag);
std::optional<std::int64_t> read_integer(const toml::node& node, const std::string& key_path,
                                         Diagnostics& diag, std::int64_t min, std::int64_t max);
std::optional<Duration> read_duration(const toml::node& node, const std::string& key_path,
                                      Diagnostics& diag);  // must be > 0
std::optional<std::uint64_t> read_size(const toml::node& node, const std::string& key_path,
                                       Diagnostics& diag);  // must be > 0

// One TOML table being read. Construction reports every key not in `known` as unknown, with
// a suggestion; the table and diag must outlive the reader.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, Diagnostics& diag,
              std::vector<std::string_view> known);

  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  Diagnostics& diag() const { return diag_; }
  std::string key_path(std::string_view key) const { return join_key(path_, key); }
  const toml::node* find(std::string_view key) const { return table_.get(key); }

  // Reports at the value of key, which must be present.
  void error_at(std::string_view key, std::string message);
  // Reports a required key that is missing, at the position of this table.
  void error_missing(std::string_view key, std::string message);
  // Whether a reader or error_at reported a problem with key's value.
  bool failed(std::string_view key) const { return failed_.count(std::string(key)) != 0; }

  std::optional<std::string> string(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<double> number(std::string_view key, double min, double max);
  std::optional<Duration> duration(std::string_view key);
  std::optional<std::uint64_t> size(std::string_view key);
  // One of `choices`, with a suggestion for a near miss.
  std::optional<std::string> choice(std::string_view key,
                                    const std::vector<std::string_view>& choices);
  // A sub-table; a value of another type is reported.
  const toml::table* subtable(std::string_view key, std::string_view expected);

 private:
  template <typename T>
  std::optional<T> note(std::string_view key, std::optional<T> value);
  void report_unknown_keys(const std::vector<std::string_view>& known);

  const toml::table& table_;
  std::string path_;
  Diagnostics& diag_;
  std::set<std::string> failed_;
};

}  // namespace deployctl::detail
