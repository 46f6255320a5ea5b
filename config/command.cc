// Command lines: shell-like splitting (without a shell) and the {replica}, {port}, {tls_cert}
// and {tls_key} placeholders.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "load.h"
#include "placeholders.h"

namespace deployctl {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

constexpr std::array<std::string_view, 12> kShellOperators{
    "|", "||", "&", "&&", ";", ";;", "<", ">", ">>", "<<", "2>", "2>&1"};

bool is_shell_operator(std::string_view word) {
  for (std::string_view op : kShellOperators) {
    if (op == word) return true;
  }
  return false;
}

// Splits words; quoting state lives here so the public function stays a thin wrapper.
class CommandSplitter {
 public:
  explicit CommandSplitter(std::string_view text) : text_(text) {}

  bool run(std::vector<std::string>* words, std::string* error) {
    while (pos_ < text_.size()) {
      if (!step(words, error)) return false;
    }
    end_word(words);
    return check_operators(*words, error);
  }

 private:
  bool step(std::vector<std::string>* words, std::string* error) {
    const char c = text_[pos_];
    if (is_blank(c)) {
      end_word(words);
      ++pos_;
      return true;
    }
    if (c == '\\') return backslash(error);
    in_word_ = true;
    if (c == '\'') return single_quoted(error);
    if (c == '"') return double_quoted(error);
    word_ += c;
    ++pos_;
    return true;
  }

  bool backslash(std::string* error) {
    if (pos_ + 1 == text_.size()) return fail(error, "trailing backslash");
    const char next = text_[pos_ + 1];
    pos_ += 2;
    if (next == '\n') return true;  // line continuation
    in_word_ = true;
    quoted_ = true;
    word_ += next;
    return true;
  }

  bool single_quoted(std::string* error) {
    const std::size_t close = text_.find('\'', pos_ + 1);
    if (close == std::string_view::npos) return fail(error, "unterminated single quote");
    word_.append(text_.substr(pos_ + 1, close - pos_ - 1));
    quoted_ = true;
    pos_ = close + 1;
    return true;
  }

  bool double_quoted(std::string* error) {
    quoted_ = true;
    for (std::size_t i = pos_ + 1; i < text_.size(); ++i) {
      const char c = text_[i];
      if (c == '"') {
        pos_ = i + 1;
        return true;
      }
      const char next = i + 1 < text_.size() ? text_[i + 1] : '\0';
      if (c == '\\' && (next == '"' || next == '\\' || next == '$' || next == '`')) {
        word_ += next;
        ++i;
      } else if (c == '\\' && next == '\n') {
        ++i;
      } else {
        word_ += c;
      }
    }
    return fail(error, "unterminated double quote");
  }

  void end_word(std::vector<std::string>* words) {
    if (in_word_) {
      words->push_back(std::move(word_));
      if (!quoted_) unquoted_.push_back(words->size() - 1);
    }
    word_.clear();
    in_word_ = false;
    quoted_ = false;
  }

  bool check_operators(const std::vector<std::string>& words, std::string* error) const {
    if (words.empty()) return fail(error, "command is empty");
    for (std::size_t index : unquoted_) {
      if (is_shell_operator(words[index])) {
        return fail(error, "'" + words[index] +
                               "' is shell syntax, but commands are not run by a shell; use "
                               "[\"sh\", \"-c\", \"...\"] for a shell, or quote it to pass it "
                               "as an argument");
      }
    }
    return true;
  }

  static bool fail(std::string* error, std::string message) {
    if (error) *error = std::move(message);
    return false;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::string word_;
  bool in_word_ = false;
  bool quoted_ = false;               // some part of the current word was quoted or escaped
  std::vector<std::size_t> unquoted_;  // indexes of words with no quoting at all
};

}  // namespace

std::vector<std::string> split_command(std::string_view text, std::string* error) {
  std::vector<std::string> words;
  if (!CommandSplitter(text).run(&words, error)) return {};
  return words;
}

std::string expand_placeholders(std::string_view text, int replica, std::optional<int> port) {
  return expand_placeholders(text, PlaceholderValues{replica, port, std::nullopt, std::nullopt});
}

std::string expand_placeholders(std::string_view text, const PlaceholderValues& values) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("{{") || rest.starts_with("}}")) {
      out += rest[0];
      i += 2;
    } else if (rest.starts_with("{replica}")) {
      out += std::to_string(values.replica);
      i += 9;
    } else if (values.port && rest.starts_with("{port}")) {
      out += std::to_string(*values.port);
      i += 6;
    } else if (values.tls_cert && rest.starts_with("{tls_cert}")) {
      out += *values.tls_cert;
      i += 10;
    } else if (values.tls_key && rest.starts_with("{tls_key}")) {
      out += *values.tls_key;
      i += 9;
    } else {
      out += rest[0];
      ++i;
    }
  }
  return out;
}

std::optional<TlsPaths> tls_paths(const ServiceSpec& service, std::string_view acme_dir) {
  if (!service.tls) return std::nullopt;
  if (!service.tls->acme) return TlsPaths{service.tls->cert, service.tls->key};
  const std::string base = std::string(acme_dir) + "/certificates/" + service.tls->acme->domains[0];
  return TlsPaths{base + ".crt", base + ".key"};
}

namespace detail {

std::optional<std::string> scan_placeholders(std::string_view text,
                                             std::vector<std::string>* names) {
  std::size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("{{") || rest.starts_with("}}")) {
      i += 2;
    } else if (rest[0] == '{') {
      const std::size_t close = rest.find('}');
      if (close == std::string_view::npos) {
        return "unclosed '{'; write '{{' for a literal brace";
      }
      names->emplace_back(rest.substr(1, close - 1));
      i += close + 1;
    } else {
      ++i;
    }
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace deployctl
