#include "export_command.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "env_file.h"
#include "export.h"

namespace deployctl {
namespace {

namespace fs = std::filesystem;

constexpr int kOk = 0, kFailed = 1, kUsage = 2;  // as ExitCode in commands.h

struct ExportArgs {
  std::string kind;
  std::string file = "deploy.toml";
  std::string output = "-";
  exporter::KubernetesOptions kubernetes;
  int systemd_version = 0;  // 0: the installed systemd's
  bool strict = false;
};

int usage(const std::string& message) {
  std::fprintf(stderr,
               "deployctl export: %s\nusage: deployctl export kubernetes [FILE] [--image IMAGE] "
               "[--namespace NS] [-o DIR|-] [--strict]\n"
               "       deployctl export systemd [FILE] [-o DIR|-] [--strict] "
               "[--systemd-version N]\n",
               message.c_str());
  return kUsage;
}

// nullopt on success, else the exit code.
std::optional<int> parse(int argc, char** argv, ExportArgs* args) {
  bool file_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc || std::string_view(argv[i + 1]).empty()) return false;
      *out = argv[++i];
      return true;
    };
    std::string number;
    if (arg == "-h" || arg == "--help") {
      usage("render the spec for another orchestrator (docs/export.md)");
      return kOk;
    } else if (arg == "--strict") {
      args->strict = true;
    } else if (arg == "-o" || arg == "--output") {
      if (!value(&args->output)) return usage("-o needs a directory, or - for stdout");
    } else if (arg == "--image" && args->kind == "kubernetes") {
      if (!value(&args->kubernetes.image)) return usage("--image needs an image reference");
    } else if (arg == "--namespace" && args->kind == "kubernetes") {
      if (!value(&args->kubernetes.name_space)) return usage("--namespace needs a name");
    } else if (arg == "--systemd-version" && args->kind == "systemd") {
      if (!value(&number) || number.find_first_not_of("0123456789") != std::string::npos ||
          number.size() > 4) {
        return usage("--systemd-version needs a number, e.g. 252");
      }
      args->systemd_version = std::stoi(number);
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage("unknown option '" + std::string(arg) + "'");
    } else if (args->kind.empty()) {
      if (arg != "kubernetes" && arg != "systemd") {
        return usage("unknown target '" + std::string(arg) + "': use kubernetes or systemd");
      }
      args->kind = arg;
    } else if (!file_given) {
      args->file = arg;
      file_given = true;
    } else {
      return usage("unexpected argument '" + std::string(arg) + "'");
    }
  }
  if (args->kind.empty()) return usage("which target: kubernetes or systemd?");
  return std::nullopt;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

// The env files the spec names that can be read now; a malformed one is an error.
bool read_env_files(const Spec& spec, std::map<std::string, EnvList>* out) {
  for (const auto& service : spec.services) {
    if (service.env_file.empty() || out->count(service.env_file)) continue;
    auto text = read_file(service.env_file);
    if (!text) continue;  // the exporter warns
    std::string problem;
    auto env = parse_env_file(*text, &problem);
    if (!env) {
      std::fprintf(stderr, "%s: %s\n", service.env_file.c_str(), problem.c_str());
      return false;
    }
    (*out)[service.env_file] = std::move(*env);
  }
  return true;
}

// "systemd 252 (252.38-1~deb12u1)" -> 252; 252 when systemctl cannot be run.
int installed_systemd_version() {
  FILE* pipe = popen("systemctl --version 2>/dev/null", "r");
  int version = 0;
  if (pipe) {
    if (std::fscanf(pipe, "systemd %d", &version) != 1) version = 0;
    pclose(pipe);
  }
  return version > 0 ? version : 252;
}

std::string located(const SpecError& error, const char* what) {
  std::string out = error.file;
  if (error.line > 0) out += ":" + std::to_string(error.line) + ":" + std::to_string(error.column);
  out += std::string(": ") + what + ": ";
  if (!error.key.empty()) out += error.key + ": ";
  return out + error.message;
}

int write_output(const exporter::ExportResult& result, const ExportArgs& args) {
  if (args.output == "-") {
    for (const auto& file : result.files) {
      if (args.kind == "systemd") std::printf("# %s\n", file.name.c_str());
      std::fputs(file.text.c_str(), stdout);
      if (args.kind == "systemd") std::fputs("\n", stdout);
    }
    return std::fflush(stdout) == 0 ? kOk : kFailed;
  }
  for (const auto& file : result.files) {
    const fs::path path = fs::path(args.output) / file.name;
    std::error_code error;
    fs::create_directories(path.parent_path(), error);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << file.text;
    out.close();
    if (error || !out) {
      std::fprintf(stderr, "deployctl export: cannot write %s: %s\n", path.c_str(),
                   error ? error.message().c_str() : "write failed");
      return kFailed;
    }
  }
  std::fprintf(stderr, "deployctl export: wrote %zu files to %s\n", result.files.size(),
               args.output.c_str());
  return kOk;
}

}  // namespace

int run_export(int argc, char** argv) {
  ExportArgs args;
  if (auto exit = parse(argc, argv, &args)) return *exit;
  LoadResult loaded = load_spec_file(args.file);
  for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
  if (!loaded.spec) return kUsage;
  std::map<std::string, EnvList> env_files;
  if (!read_env_files(*loaded.spec, &env_files)) return kUsage;
  const exporter::ExportInput input{*loaded.spec, loaded.positions, env_files};
  exporter::ExportResult result;
  if (args.kind == "kubernetes") {
    result = exporter::export_kubernetes(input, args.kubernetes);
  } else {
    const int version = args.systemd_version ? args.systemd_version : installed_systemd_version();
    result = exporter::export_systemd(input, exporter::SystemdOptions{version});
  }
  for (const auto& error : result.errors)
    std::fprintf(stderr, "%s\n", located(error, "error").c_str());
  if (!result.errors.empty()) return kUsage;
  for (const auto& warning : result.warnings) {
    std::fprintf(stderr, "%s\n", located(warning, "warning").c_str());
  }
  if (args.strict && !result.warnings.empty()) {
    std::fprintf(stderr, "deployctl export: %zu warnings and --strict: nothing written\n",
                 result.warnings.size());
    return kUsage;
  }
  return write_output(result, args);
}

}  // namespace deployctl
