// The top-level [export] table, read only by `deployctl export` (docs/export.md), and the
// positions of every key, which the exporters cite in their warnings.
#include "spec_fields.h"

namespace deployctl::detail {
namespace {

SourcePosition position_of(const toml::source_region& where) {
  return SourcePosition{static_cast<int>(where.begin.line), static_cast<int>(where.begin.column)};
}

void add_positions(const toml::table& table, const std::string& path, SourceMap* out);

void add_node(const toml::node& node, const std::string& path, SourceMap* out) {
  if (const auto* table = node.as_table()) {
    add_positions(*table, path, out);
  } else if (const auto* array = node.as_array(); array && array->is_array_of_tables()) {
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string element = path + "[" + std::to_string(i) + "]";
      out->emplace(element, position_of((*array)[i].source()));
      add_node((*array)[i], element, out);
    }
  }
}

void add_positions(const toml::table& table, const std::string& path, SourceMap* out) {
  for (const auto& [key, node] : table) {
    const std::string key_path = join_key(path, key.str());
    out->emplace(key_path, position_of(key.source()));
    add_node(node, key_path, out);
  }
}

}  // namespace

void read_export(TableReader& root, ExportSpec* settings) {
  const toml::table* table =
      root.subtable("export", "a table such as [export.kubernetes] with image = \"...\"");
  if (!table) return;
  TableReader reader(*table, root.key_path("export"), root.diag(), {"kubernetes"});
  const toml::table* kubernetes =
      reader.subtable("kubernetes", "a table such as [export.kubernetes] with image = \"...\"");
  if (!kubernetes) return;
  TableReader k8s(*kubernetes, reader.key_path("kubernetes"), root.diag(), {"image"});
  if (auto image = k8s.string("image")) {
    if (image->empty() || image->find_first_of(" \t\n") != std::string::npos) {
      k8s.error_at("image", "expected an image reference such as \"registry/app:1.0\", got " +
                                quote(*image));
    } else {
      settings->kubernetes_image = *image;
    }
  }
}

SourceMap key_positions(const toml::table& root) {
  SourceMap positions;
  add_positions(root, "", &positions);
  return positions;
}

}  // namespace deployctl::detail
