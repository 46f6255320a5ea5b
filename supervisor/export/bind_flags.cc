#include "bind_flags.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace deployctl::exporter {
namespace {

constexpr std::array<std::string_view, 5> kServers = {"uvicorn", "gunicorn", "hypercorn", "daphne",
                                                      "deploy-server"};

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_python(const std::string& program) {
  const std::string name = base_name(program);
  return name == "python" || name.rfind("python3", 0) == 0;
}

// The known server the command runs, and the index of its first own argument.
std::pair<std::string, std::size_t> server_of(const std::vector<std::string>& command) {
  std::string program = command.empty() ? "" : base_name(command[0]);
  std::size_t first = 1;
  if (!command.empty() && is_python(command[0]) && command.size() > 2 && command[1] == "-m") {
    program = command[2];
    first = 3;
  }
  const bool known = std::find(kServers.begin(), kServers.end(), program) != kServers.end();
  return {known ? program : "", first};
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// Whether arguments [i, i+1] are a socket passed by number; sets *width to 1 or 2.
bool is_fd_argument(const std::vector<std::string>& command, std::size_t i, std::size_t* width) {
  const std::string& arg = command[i];
  const bool has_next = i + 1 < command.size();
  if (starts_with(arg, "--fd=") || starts_with(arg, "--bind=fd://") ||
      starts_with(arg, "-bfd://")) {
    *width = 1;
    return true;
  }
  if ((arg == "--fd" && has_next) ||
      ((arg == "--bind" || arg == "-b") && has_next && starts_with(command[i + 1], "fd://"))) {
    *width = 2;
    return true;
  }
  return false;
}

bool binds_itself(const std::string& arg) {
  for (std::string_view flag : {"--host", "--port", "--bind", "--listen", "-b", "-p"}) {
    if (arg == flag || starts_with(arg, std::string(flag) + "=")) return true;
  }
  return false;
}

std::string host_port(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// The flags that make `server` bind ports on host; a problem when it binds only one address.
std::vector<std::string> bind_flags(const std::string& server,
                                    const std::vector<std::uint16_t>& ports,
                                    const std::string& host, std::string* problem) {
  std::vector<std::string> flags;
  const bool single = server == "uvicorn" || server == "daphne";
  if (single && ports.size() > 1) {
    *problem = server + " binds one address; only port " + std::to_string(ports[0]) +
               " is bound in the container";
  }
  for (std::size_t i = 0; i < ports.size() && !(single && i > 0); ++i) {
    const std::string port = std::to_string(ports[i]);
    if (server == "uvicorn") flags.insert(flags.end(), {"--host", host, "--port", port});
    if (server == "daphne") flags.insert(flags.end(), {"-b", host, "-p", port});
    if (server == "gunicorn" || server == "hypercorn") {
      flags.insert(flags.end(), {"--bind", host_port(host, ports[i])});
    }
    if (server == "deploy-server")
      flags.insert(flags.end(), {"--listen", host_port(host, ports[i])});
  }
  return flags;
}

}  // namespace

BindRewrite bind_by_itself(const std::vector<std::string>& command,
                           const std::vector<std::uint16_t>& ports, const std::string& host) {
  BindRewrite result;
  auto [server, first] = server_of(command);
  result.server = server;
  bool used_fd = false;
  bool binds = false;
  for (std::size_t i = 0; i < command.size(); ++i) {
    std::size_t width = 0;
    if (i >= first && is_fd_argument(command, i, &width)) {
      used_fd = true;
      if (!server.empty()) {
        i += width - 1;
        continue;
      }
    }
    if (i >= first && binds_itself(command[i])) binds = true;
    result.command.push_back(command[i]);
  }
  if (server.empty()) {
    if (used_fd || (!ports.empty() && !binds)) {
      result.problem =
          "the command expects its listening socket from deployctl (fd 3, "
          "LISTEN_FDS), which nothing passes in a pod; make it bind port(s) "
          "itself (known servers: uvicorn, gunicorn, hypercorn, daphne, "
          "deploy-server)";
    }
    return result;
  }
  if (!binds) {
    std::vector<std::string> flags = bind_flags(server, ports, host, &result.problem);
    result.command.insert(result.command.end(), flags.begin(), flags.end());
  }
  return result;
}

}  // namespace deployctl::exporter
