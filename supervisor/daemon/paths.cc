#include "paths.h"

#include <unistd.h>

#include <cstdlib>

namespace deployctl {
namespace {

const char* env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

std::string runtime_base(const std::string& override_dir) {
  if (!override_dir.empty()) return override_dir;
  if (const char* env = std::getenv("DEPLOYCTL_RUNTIME_DIR"); env && *env) return env;
  if (geteuid() == 0) return "/run/deployctl";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) {
    return std::string(xdg) + "/deployctl";
  }
  return "/tmp/deployctl-" + std::to_string(geteuid());
}

StatePaths state_paths(const std::string& base, const std::string& name) {
  std::string dir = base + "/" + name;
  return {dir, dir + "/control.sock", dir + "/lock", dir + "/supervisor.pid",
          dir + "/supervisor.log", dir + "/scale.json"};
}

std::string resolve_log_dir(const LogDirInputs& in) {
  if (!in.log_dir_option.empty()) return in.log_dir_option + "/" + in.name;
  if (!in.spec_dir.empty()) return in.spec_dir;
  if (in.root && !in.runtime_dir_overridden) return "/var/log/deployctl/" + in.name;
  return in.state_dir + "/logs";
}

std::string log_dir_for(const std::string& log_dir_flag, const std::string& runtime_dir_flag,
                        const LogsSpec* spec_logs, const std::string& name,
                        const std::string& state_dir) {
  LogDirInputs inputs;
  inputs.log_dir_option = log_dir_flag.empty() ? env_or_empty("DEPLOYCTL_LOG_DIR") : log_dir_flag;
  inputs.spec_dir = spec_logs ? spec_logs->dir : "";
  inputs.runtime_dir_overridden =
      !runtime_dir_flag.empty() || *env_or_empty("DEPLOYCTL_RUNTIME_DIR") != '\0';
  inputs.root = geteuid() == 0;
  inputs.name = name;
  inputs.state_dir = state_dir;
  return resolve_log_dir(inputs);
}

}  // namespace deployctl
