// The top-level [logs] table: where per-service log files go and how they rotate.
#include "spec_fields.h"

namespace deployctl::detail {

void read_logs(TableReader& root, const std::filesystem::path& spec_dir, LogsSpec* logs) {
  const toml::table* table =
      root.subtable("logs", "a table such as [logs] with max_size = \"10MiB\", keep = 5");
  if (!table) return;
  TableReader reader(*table, root.key_path("logs"), root.diag(), {"dir", "max_size", "keep"});
  if (auto dir = read_path(reader, "dir", spec_dir)) logs->dir = *dir;
  if (auto size = reader.size("max_size")) {
    if (*size < LogsSpec::kMinLogSize) {
      reader.error_at("max_size", "a log file must be allowed at least 1KiB (" +
                                      std::to_string(LogsSpec::kMinLogSize) + " bytes), got " +
                                      std::to_string(*size) + " bytes");
    } else {
      logs->max_size = *size;
    }
  }
  if (auto keep = reader.integer("keep", 1, 1000)) logs->keep = static_cast<int>(*keep);
}

}  // namespace deployctl::detail
