#include "warnings.h"

#include <algorithm>

namespace deployctl::exporter {

void Warnings::add(const std::string& key, std::string message) {
  std::string where = key;
  while (!where.empty() && !positions_.count(where)) {
    const auto dot = where.find_last_of('.');
    where = dot == std::string::npos ? "" : where.substr(0, dot);
  }
  SpecError warning{file_, 0, 0, key, std::move(message)};
  if (auto it = positions_.find(where); it != positions_.end()) {
    warning.line = it->second.line;
    warning.column = it->second.column;
  }
  warnings_.push_back(std::move(warning));
}

std::vector<SpecError> Warnings::take() {
  std::stable_sort(warnings_.begin(), warnings_.end(), [](const SpecError& a, const SpecError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(warnings_);
}

std::string service_key(const std::string& service, const std::string& rest) {
  std::string key = "services." + service;
  return rest.empty() ? key : key + "." + rest;
}

std::string dns_label(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out += (c == '_' || c == '.') ? '-' : c;
  }
  return out;
}

long long ceil_seconds(Duration duration) {
  const long long ms = duration.count();
  return ms <= 1000 ? 1 : (ms + 999) / 1000;
}

}  // namespace deployctl::exporter
