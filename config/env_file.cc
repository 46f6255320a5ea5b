#include "env_file.h"

namespace deployctl {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

bool valid_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::optional<std::string> unquote(std::string_view value, std::string* error) {
  if (value.size() < 2 || (value.front() != '"' && value.front() != '\'')) return std::string(value);
  const char quote = value.front();
  if (value.back() != quote) {
    *error = "unterminated quote";
    return std::nullopt;
  }
  value = value.substr(1, value.size() - 2);
  if (quote == '\'') return std::string(value);
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '\\' || i + 1 == value.size()) {
      out += value[i];
      continue;
    }
    char next = value[++i];
    out += next == 'n' ? '\n' : next == 't' ? '\t' : next;
  }
  return out;
}

}  // namespace

std::optional<EnvList> parse_env_file(std::string_view text, std::string* error) {
  EnvList env;
  int number = 0;
  while (!text.empty()) {
    ++number;
    auto newline = text.find('\n');
    std::string_view line = trim(text.substr(0, newline));
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.substr(0, 7) == "export ") line = trim(line.substr(7));
    auto eq = line.find('=');
    std::string_view name = trim(line.substr(0, eq));
    if (eq == std::string_view::npos || !valid_name(name)) {
      *error = "line " + std::to_string(number) + ": expected NAME=VALUE";
      return std::nullopt;
    }
    std::string problem;
    auto value = unquote(trim(line.substr(eq + 1)), &problem);
    if (!value) {
      *error = "line " + std::to_string(number) + ": " + problem;
      return std::nullopt;
    }
    env.emplace_back(std::string(name), std::move(*value));
  }
  return env;
}

}  // namespace deployctl
