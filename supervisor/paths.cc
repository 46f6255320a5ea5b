#include "paths.h"

#include <unistd.h>

#include <cstdlib>

namespace deployctl {

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

}  // namespace deployctl
