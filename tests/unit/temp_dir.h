// A fresh directory under /tmp for one test, removed with everything in it at the end.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <doctest/doctest.h>

namespace deployctl::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char name[] = "/tmp/deployctl-unit-XXXXXX";
    REQUIRE(mkdtemp(name) != nullptr);
    path = std::filesystem::canonical(name);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The path of `name` inside the directory, as a string.
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace deployctl::test
