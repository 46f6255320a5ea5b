#include "yaml.h"

#include <cstdio>

namespace deployctl::exporter::yaml {
namespace {

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof escape, "\\x%02x", c);
          out += escape;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace

Node Node::str(std::string text) {
  Node node(Kind::scalar);
  node.scalar_ = quoted(text);
  return node;
}

Node Node::integer(std::int64_t value) {
  Node node(Kind::scalar);
  node.scalar_ = std::to_string(value);
  return node;
}

Node Node::boolean(bool value) {
  Node node(Kind::scalar);
  node.scalar_ = value ? "true" : "false";
  return node;
}

Node Node::strings(const std::vector<std::string>& items) {
  Node node = list();
  for (const auto& item : items) node.add(str(item));
  return node;
}

Node& Node::set(std::string key, Node value) {
  entries_.emplace_back(std::move(key), std::move(value));
  return *this;
}

Node& Node::add(Node value) {
  items_.push_back(std::move(value));
  return *this;
}

std::string Node::inline_text() const {
  if (kind_ == Kind::scalar) return scalar_;
  return kind_ == Kind::map ? "{}" : "[]";
}

void Node::emit_block(std::string& out, int indent) const {
  const std::string pad(indent, ' ');
  for (const auto& [key, value] : entries_) {
    if (value.is_inline()) {
      out += pad + key + ": " + value.inline_text() + "\n";
    } else {
      out += pad + key + ":\n";
      value.emit_block(out, indent + 2);
    }
  }
  for (const auto& item : items_) {
    if (item.is_inline()) {
      out += pad + "- " + item.inline_text() + "\n";
      continue;
    }
    // A nested block, its first line's indentation replaced by the list marker.
    std::string block;
    item.emit_block(block, indent + 2);
    out += pad + "- " + block.substr(indent + 2);
  }
}

std::string Node::emit() const {
  if (is_inline()) return inline_text() + "\n";
  std::string out;
  emit_block(out, 0);
  return out;
}

}  // namespace deployctl::exporter::yaml
