// deploy-server: parses the command line and runs the worker.
#include <exception>
#include <iostream>
#include <string_view>
#include <vector>

#include "log.h"
#include "server_options.h"
#include "worker.h"

int main(int argc, char** argv) {
  using namespace deployctl::server;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  OptionsResult parsed = parse_options(args);
  if (!parsed.error.empty()) {
    std::cerr << "deploy-server: " << parsed.error << "\n(see deploy-server --help)\n";
    return kExitUsage;
  }
  if (parsed.options.help) {
    std::cout << usage_text();
    return kExitOk;
  }
  if (parsed.options.version) {
    std::cout << "deploy-server " << DEPLOY_SERVER_VERSION << "\n";
    return kExitOk;
  }
  try {
    return run_worker(parsed.options);
  } catch (const std::exception& error) {
    log_line(std::string("fatal: ") + error.what());
    return kExitRuntimeError;
  }
}
