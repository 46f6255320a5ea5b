#include "unit_file.h"

#include <cstdio>
#include <string_view>

namespace deployctl::exporter::unit {
namespace {

std::string escaped(const std::string& text, bool specifiers, bool variables) {
  std::string out;
  for (char c : text) {
    if (c == '%' && specifiers) out += '%';
    if (c == '$' && variables) out += '$';
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

bool needs_quotes(const std::string& word) {
  if (word.empty()) return true;
  for (char c : word) {
    if (c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '\\' || c == ';' || c == '\n') {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string exec_word(const std::string& word) {
  std::string text = escaped(word, true, true);
  return needs_quotes(word) ? "\"" + text + "\"" : text;
}

namespace {

// {replica} -> %i, {port} -> ${DEPLOYCTL_PORT} (exec only), "{{"/"}}" -> braces; the rest
// escaped for an Exec*= word (exec) or an Environment= value.
std::string substitute(const std::string& word, bool exec) {
  std::string out;
  for (std::size_t i = 0; i < word.size();) {
    const std::string_view rest = std::string_view(word).substr(i);
    if (rest.substr(0, 9) == "{replica}") {
      out += "%i";
      i += 9;
    } else if (exec && rest.substr(0, 6) == "{port}") {
      out += std::string("${") + kPortVariable + "}";
      i += 6;
    } else if (rest.substr(0, 2) == "{{" || rest.substr(0, 2) == "}}") {
      out += rest[0];
      i += 2;
    } else {
      out += escaped(std::string(1, word[i]), true, exec);
      i += 1;
    }
  }
  return out;
}

}  // namespace

std::string template_word(const std::string& word) {
  const std::string out = substitute(word, true);
  return needs_quotes(word) ? "\"" + out + "\"" : out;
}

std::string environment_template(const std::string& key, const std::string& value) {
  return "Environment=\"" + escaped(key, true, false) + "=" + substitute(value, false) + "\"";
}

std::string exec_line(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& word : argv) line += (line.empty() ? "" : " ") + word;
  return line;
}

std::string environment(const std::string& key, const std::string& value) {
  return "Environment=\"" + escaped(key + "=" + value, true, false) + "\"";
}

std::string no_specifiers(const std::string& text) { return escaped(text, true, false); }

std::string timespan(Duration duration) {
  const long long ms = duration.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

std::string escape_name(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == ':' || c == '_' || c == '.' || c == '-';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      char code[8];
      std::snprintf(code, sizeof code, "\\x%02x", c);
      out += code;
    }
  }
  return out;
}

}  // namespace deployctl::exporter::unit
