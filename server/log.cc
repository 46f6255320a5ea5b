#include "log.h"

#include <unistd.h>

#include <string>

namespace deployctl::server {

void log_line(std::string_view message) {
  std::string line = "deploy-server[" + std::to_string(::getpid()) + "]: ";
  line.append(message);
  line.push_back('\n');
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t written = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (written <= 0) return;  // stderr is gone; nothing better to do
    rest.remove_prefix(static_cast<std::size_t>(written));
  }
}

}  // namespace deployctl::server
