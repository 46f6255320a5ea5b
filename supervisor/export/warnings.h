// Internal to export/: collecting warnings at the position of the key they are about.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "load.h"

namespace deployctl::exporter {

class Warnings {
 public:
  Warnings(const std::string& file, const SourceMap& positions)
      : file_(file), positions_(positions) {}

  // A warning about key (a dotted path as in SpecError::key). A key that is not in the file
  // (a default) is placed at the nearest enclosing key that is.
  void add(const std::string& key, std::string message);
  // Whether key was written in the file (not a default).
  bool written(const std::string& key) const { return positions_.count(key) != 0; }
  // In file order (line, column), keys without a position first.
  std::vector<SpecError> take();

 private:
  const std::string& file_;
  const SourceMap& positions_;
  std::vector<SpecError> warnings_;
};

// "services.NAME" + "." + rest
std::string service_key(const std::string& service, const std::string& rest = "");

// Object and unit names: lower-case letters, digits and '-' ('_' and '.' become '-').
std::string dns_label(const std::string& text);

// Whole seconds, rounded up, at least 1 (Kubernetes' fields are in seconds).
long long ceil_seconds(Duration duration);

}  // namespace deployctl::exporter
