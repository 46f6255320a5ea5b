// parse_spec and load_spec_file: TOML text -> Spec, with the top level and [[pre_start]].
// toml++ exceptions are caught here; nothing escapes config/.
#include "load.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "read_file.h"
#include "spec_fields.h"
#include "toml_reader.h"

namespace deployctl {
namespace {

namespace fs = std::filesystem;
using detail::Diagnostics;
using detail::TableReader;

// The log file of the pre-start steps (docs/logs.md) takes this name, so no service may.
constexpr std::string_view kPreStartLogName = "pre_start";

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

// [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
bool is_spec_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || !is_alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

// [a-z0-9][a-z0-9_-]{0,31}
bool is_service_name(std::string_view name) {
  if (name.empty() || name.size() > 32 || !is_lower_alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_lower_alnum(c) || c == '_' || c == '-'; });
}

fs::path absolute_path(const std::string& file_path) {
  std::error_code error;
  fs::path path = fs::absolute(fs::path(file_path), error);
  if (error) return fs::path(file_path);
  return path.lexically_normal();
}

void read_spec_name(TableReader& reader, const std::string& file_path, Spec* spec) {
  constexpr std::string_view kRule =
      "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit";
  if (reader.find("name")) {
    std::optional<std::string> name = reader.string("name");
    if (name && !is_spec_name(*name)) {
      reader.error_at("name", "invalid name " + detail::quote(*name) + "; " + std::string(kRule));
    } else if (name) {
      spec->name = *name;
    }
    return;
  }
  spec->name = fs::path(file_path).stem().string();
  if (!is_spec_name(spec->name)) {
    reader.diag().add(0, 0, "name",
                      "the file name " + detail::quote(spec->name) +
                          " cannot be the spec name; set name = \"...\" (" +
                          std::string(kRule) + ")");
  }
}

PreStartStep read_step(const toml::table& table, std::size_t index, const fs::path& spec_dir,
                       Diagnostics& diag) {
  static const detail::PlaceholderRules kRules{
      false,
      false,
      "pre_start steps run once, not per replica, so {replica} is not available",
      "pre_start steps run once, not per replica, so {port} is not available",
      false,
      "pre_start steps belong to no service, so {tls_cert} and {tls_key} are not available"};
  TableReader reader(table, "pre_start[" + std::to_string(index) + "]", diag,
                     {"name", "command", "timeout", "env", "working_dir"});
  PreStartStep step;
  step.name = "step-" + std::to_string(index + 1);
  step.working_dir = detail::resolve_path(spec_dir, ".");
  if (auto name = reader.string("name")) {
    if (name->empty()) reader.error_at("name", "a step name cannot be empty");
    step.name = *name;
  }
  if (!reader.find("command")) {
    reader.error_missing("command", "every pre_start step needs a command, e.g. "
                                    "command = [\"./manage\", \"migrate\"]");
  } else if (auto command = detail::read_command(reader, "command", kRules)) {
    step.command = *command;
  }
  if (auto timeout = reader.duration("timeout")) step.timeout = *timeout;
  if (auto env = detail::read_env(reader, "env", kRules)) step.env = std::move(*env);
  detail::check_exec_size(reader, "command", "env", step.command, step.env);
  if (auto path = detail::read_path(reader, "working_dir", spec_dir)) step.working_dir = *path;
  return step;
}

void read_pre_start(TableReader& reader, const fs::path& spec_dir, Spec* spec) {
  const toml::node* node = reader.find("pre_start");
  if (!node) return;
  const auto* steps = node->as_array();
  if (!steps || !steps->is_array_of_tables()) {
    reader.error_at("pre_start", "expected [[pre_start]] tables, got " + detail::describe(*node));
    return;
  }
  for (std::size_t i = 0; i < steps->size(); ++i) {
    const toml::table& table = *(*steps)[i].as_table();
    PreStartStep step = read_step(table, i, spec_dir, reader.diag());
    const bool duplicate = std::any_of(spec->pre_start.begin(), spec->pre_start.end(),
                                       [&](const PreStartStep& s) { return s.name == step.name; });
    if (duplicate) {
      const toml::node* where = table.get("name");
      reader.diag().add(where ? where->source() : table.source(),
                        "pre_start[" + std::to_string(i) + "].name",
                        "step name " + detail::quote(step.name) + " is used twice");
    }
    spec->pre_start.push_back(std::move(step));
  }
}

void read_services(TableReader& reader, const fs::path& spec_dir, Spec* spec) {
  constexpr std::string_view kNone =
      "no services defined: add at least one [services.NAME] table with a command";
  const toml::table* services =
      reader.subtable("services", "a table of services such as [services.web]");
  if (!services) {
    if (!reader.find("services")) reader.error_missing("services", std::string(kNone));
    return;
  }
  if (services->empty()) reader.error_at("services", std::string(kNone));
  detail::ListenClaims claims;
  for (const auto& [key, node] : detail::entries_in_file_order(*services)) {
    const std::string name(key->str());
    const std::string path = detail::join_key("services", name);
    if (!is_service_name(name)) {
      reader.diag().add(key->source(), path,
                        "invalid service name " + detail::quote(name) +
                            "; use 1 to 32 lower-case letters, digits, '_' or '-', starting "
                            "with a letter or digit");
    } else if (name == kPreStartLogName) {
      reader.diag().add(key->source(), path,
                        "the service name \"pre_start\" is reserved: the pre-start steps' "
                        "output is logged as pre_start.log; choose another name");
    }
    if (const auto* table = node->as_table()) {
      spec->services.push_back(detail::read_service(*table, name, spec_dir, &claims,
                                                    reader.diag()));
    } else {
      reader.diag().add(node->source(), path,
                        "expected a table such as [services." + name + "], got " +
                            detail::describe(*node));
    }
  }
}

Spec read_spec(const toml::table& root, const std::string& file_path, Diagnostics& diag) {
  TableReader reader(root, "", diag, {"name", "pre_start", "services", "logs", "metrics", "export"});
  Spec spec;
  const fs::path path = absolute_path(file_path);
  spec.path = path.string();
  read_spec_name(reader, file_path, &spec);
  read_pre_start(reader, path.parent_path(), &spec);
  read_services(reader, path.parent_path(), &spec);
  detail::read_logs(reader, path.parent_path(), &spec.logs);
  detail::read_metrics(reader, spec.services, &spec.metrics);
  detail::read_export(reader, &spec.export_settings);
  return spec;
}

std::optional<toml::table> parse_toml(std::string_view text, const std::string& file_path,
                                      Diagnostics& diag) {
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text, std::string_view(file_path));
  } catch (const toml::parse_error& error) {
    diag.add(error.source(), "", std::string(error.description()));
    return std::nullopt;
  }
#else
  toml::parse_result result = toml::parse(text, std::string_view(file_path));
  if (result) return std::move(result).table();
  diag.add(result.error().source(), "", std::string(result.error().description()));
  return std::nullopt;
#endif
}

LoadResult failure(const std::string& file, std::string message) {
  return LoadResult{std::nullopt, {SpecError{file, 0, 0, "", std::move(message)}}};
}

}  // namespace

std::string SpecError::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

LoadResult parse_spec(std::string_view toml_text, const std::string& file_path) {
  try {
    Diagnostics diag(file_path);
    std::optional<toml::table> root = parse_toml(toml_text, file_path, diag);
    if (!root) return LoadResult{std::nullopt, diag.take_sorted()};
    Spec spec = read_spec(*root, file_path, diag);
    if (!diag.empty()) return LoadResult{std::nullopt, diag.take_sorted()};
    return LoadResult{std::move(spec), {}, detail::key_positions(*root)};
  } catch (const std::exception& error) {
    return failure(file_path, std::string("internal error while reading the spec: ") +
                                  error.what());
  }
}

LoadResult load_spec_file(const std::string& path) {
  FileRead file = read_file(path, kMaxSpecBytes);
  if (file.error_number != 0) return failure(path, "cannot open spec file: " + file.error);
  if (!file.ok()) return failure(path, file.error);
  return parse_spec(file.text, path);
}

std::optional<std::string> deployment_name(const std::string& path) {
  LoadResult loaded = load_spec_file(path);
  if (loaded.spec) return loaded.spec->name;
  try {
    FileRead file = read_file(path, kMaxSpecBytes);
    if (!file.ok()) return std::nullopt;
    Diagnostics diag(path);
    std::optional<toml::table> root = parse_toml(file.text, path, diag);
    if (!root) return std::nullopt;
    if (auto name = (*root)["name"].value<std::string>()) return *name;
    return fs::path(path).stem().string();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace deployctl
