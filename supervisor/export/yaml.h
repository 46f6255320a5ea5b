// Internal to export/: a small YAML document model and emitter, enough for Kubernetes objects.
// Maps keep insertion order; strings are always double-quoted (JSON escapes), so no value is
// ever read back as another type.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace deployctl::exporter::yaml {

class Node {
 public:
  static Node map() { return Node(Kind::map); }
  static Node list() { return Node(Kind::list); }
  static Node str(std::string text);
  static Node integer(std::int64_t value);
  static Node boolean(bool value);
  static Node strings(const std::vector<std::string>& items);

  // map only: appends key (keys are written as given, so use plain YAML keys).
  Node& set(std::string key, Node value);
  // list only.
  Node& add(Node value);
  bool empty() const { return entries_.empty() && items_.empty() && kind_ != Kind::scalar; }

  // A whole document, ending in a newline.
  std::string emit() const;

 private:
  enum class Kind { map, list, scalar };
  explicit Node(Kind kind) : kind_(kind) {}
  void emit_block(std::string& out, int indent) const;
  std::string inline_text() const;  // a scalar, "{}" or "[]"
  bool is_inline() const { return kind_ == Kind::scalar || empty(); }

  Kind kind_;
  std::string scalar_;
  std::vector<std::pair<std::string, Node>> entries_;
  std::vector<Node> items_;
};

}  // namespace deployctl::exporter::yaml
