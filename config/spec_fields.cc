#include "spec_fields.h"

#include <charconv>

#include "placeholders.h"

namespace deployctl::detail {
namespace {

constexpr std::string_view kPlaceholderHelp =
    "use {replica}, {port}, {tls_cert} or {tls_key}, or write '{{' and '}}' for literal braces";

bool is_tls_placeholder(const std::string& name) { return name == "tls_cert" || name == "tls_key"; }

// Error message for the first placeholder in text that rules forbid, if any.
std::optional<std::string> placeholder_error(std::string_view text,
                                             const PlaceholderRules& rules) {
  std::vector<std::string> names;
  if (auto error = scan_placeholders(text, &names)) return error;
  for (const std::string& name : names) {
    if (name == "replica" && !rules.replica) return std::string(rules.no_replica_reason);
    if (name == "port" && !rules.port) return std::string(rules.no_port_reason);
    if (is_tls_placeholder(name) && !rules.tls) return std::string(rules.no_tls_reason);
    if (name != "replica" && name != "port" && !is_tls_placeholder(name)) {
      return "unknown placeholder " + quote("{" + name + "}") + "; " +
             std::string(kPlaceholderHelp);
    }
  }
  return std::nullopt;
}

bool is_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string number_text(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

// The text an env value stands for, or nullopt for a type that has none.
std::optional<std::string> env_text(const toml::node& value) {
  if (const auto* text = value.as_string()) return text->get();
  if (const auto* integer = value.as_integer()) return std::to_string(integer->get());
  if (const auto* floating = value.as_floating_point()) return number_text(floating->get());
  if (const auto* boolean = value.as_boolean()) return boolean->get() ? "true" : "false";
  return std::nullopt;
}

std::optional<std::vector<std::string>> command_from_string(TableReader& reader,
                                                            std::string_view key,
                                                            const std::string& text,
                                                            const PlaceholderRules& rules) {
  std::string error;
  std::vector<std::string> argv = split_command(text, &error);
  if (argv.empty()) {
    reader.error_at(key, "cannot split command: " + error);
    return std::nullopt;
  }
  for (const std::string& arg : argv) {
    if (auto bad = placeholder_error(arg, rules)) {
      reader.error_at(key, *bad);
      return std::nullopt;
    }
  }
  return argv;
}

std::optional<std::vector<std::string>> command_from_array(TableReader& reader,
                                                           std::string_view key,
                                                           const toml::array& array,
                                                           const PlaceholderRules& rules) {
  if (array.empty()) {
    reader.error_at(key, "command is empty; give the program and its arguments");
    return std::nullopt;
  }
  std::vector<std::string> argv;
  bool ok = true;
  for (std::size_t i = 0; i < array.size(); ++i) {
    const std::string element_path = reader.key_path(key) + "[" + std::to_string(i) + "]";
    const std::optional<std::string> arg = read_string(array[i], element_path, reader.diag());
    std::optional<std::string> bad;
    if (arg) bad = placeholder_error(*arg, rules);
    if (arg && !bad && i == 0 && arg->empty()) bad = "the program name is empty";
    if (bad) reader.diag().add(array[i].source(), element_path, *bad);
    ok = ok && arg && !bad;
    if (arg) argv.push_back(*arg);
  }
  if (!ok) return std::nullopt;
  return argv;
}

}  // namespace

std::optional<std::vector<std::string>> read_command(TableReader& reader, std::string_view key,
                                                     const PlaceholderRules& rules) {
  const toml::node* node = reader.find(key);
  if (!node) return std::nullopt;
  if (const auto* text = node->as_string()) {
    return command_from_string(reader, key, text->get(), rules);
  }
  if (const auto* array = node->as_array()) return command_from_array(reader, key, *array, rules);
  reader.error_at(key, "expected an array of strings such as [\"./app\", \"--port\", \"8000\"] "
                       "or a string, got " + describe(*node));
  return std::nullopt;
}

std::optional<EnvList> read_env(TableReader& reader, std::string_view key,
                                const PlaceholderRules& rules) {
  const toml::table* table =
      reader.subtable(key, "a table such as env = { APP_ENV = \"production\" }");
  if (!table) return std::nullopt;
  EnvList env;
  for (const auto& [name_key, value] : entries_in_file_order(*table)) {
    const std::string name(name_key->str());
    const std::string path = join_key(reader.key_path(key), name);
    if (!is_env_name(name)) {
      reader.diag().add(name_key->source(), path,
                        "invalid environment variable name " + quote(name) +
                            "; use letters, digits and '_', not starting with a digit");
      continue;
    }
    const std::optional<std::string> text = env_text(*value);
    if (!text) {
      reader.diag().add(value->source(), path,
                        "expected a string, number or boolean, got " + describe(*value));
      continue;
    }
    if (auto bad = placeholder_error(*text, rules)) {
      reader.diag().add(value->source(), path, *bad);
      continue;
    }
    if (name.size() + 1 + text->size() > kMaxExecString) {
      reader.diag().add(value->source(), path,
                        "this variable is " + std::to_string(name.size() + 1 + text->size()) +
                            " bytes; the kernel refuses one longer than " +
                            std::to_string(kMaxExecString) + " (put large data in a file)");
      continue;
    }
    env.emplace_back(name, *text);
  }
  return env;
}

void check_exec_size(TableReader& reader, std::string_view command_key, std::string_view env_key,
                     const std::vector<std::string>& command, const EnvList& env) {
  std::size_t total = 0;
  for (const auto& arg : command) {
    if (arg.size() > kMaxExecString) {
      reader.error_at(command_key, "an argument of " + std::to_string(arg.size()) +
                                       " bytes; the kernel refuses one longer than " +
                                       std::to_string(kMaxExecString));
      return;
    }
    total += arg.size() + 1 + sizeof(char*);
  }
  for (const auto& [name, value] : env) total += name.size() + 2 + value.size() + sizeof(char*);
  if (total <= kMaxExecTotal) return;
  const std::string message =
      "command and env take " + std::to_string(total) + " bytes per process; at most " +
      std::to_string(kMaxExecTotal) + " are allowed (the kernel's limit on argv + environment "
      "is 2 MiB, and the inherited environment needs room too): put large data in a file";
  reader.error_at(reader.find(env_key) ? env_key : command_key, message);
}

std::string resolve_path(const std::filesystem::path& base, const std::string& path) {
  std::filesystem::path resolved = (base / path).lexically_normal();
  if (!resolved.has_filename() && resolved.has_parent_path() && resolved != resolved.root_path()) {
    resolved = resolved.parent_path();
  }
  return resolved.string();
}

std::optional<std::string> read_path(TableReader& reader, std::string_view key,
                                     const std::filesystem::path& base) {
  std::optional<std::string> path = reader.string(key);
  if (!path) return std::nullopt;
  if (path->empty() || path->find('\0') != std::string::npos) {
    reader.error_at(key, "expected a path, got " + quote(*path));
    return std::nullopt;
  }
  return resolve_path(base, *path);
}

}  // namespace deployctl::detail
