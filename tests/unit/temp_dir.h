// A fresh directory under /tmp for one test, removed with everything in it at the end.
#pragma once

#include <stdlib.h>

#include <filesystem>

namespace deployctl::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char name[] = "/tmp/deployctl-unit-XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace deployctl::test
