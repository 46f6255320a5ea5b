#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <string_view>

#include "fd_keeper.h"

// fd_keeper_test.cc starts the fd keeper from this binary (/proc/self/exe __keeper ...), as the
// supervisor starts it from deployctl.
int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "__keeper") {
    return deployctl::run_keeper(argc - 1, argv + 1);
  }
  return doctest::Context(argc, argv).run();
}
