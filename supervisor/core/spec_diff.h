// What a reload changes: the difference between the running spec and a new one. Pure.
#pragma once

#include <string>
#include <vector>

#include "spec.h"

namespace deployctl {

struct SpecDiff {
  std::vector<std::string> added;     // services only in the new spec: start them
  std::vector<std::string> removed;   // services only in the old spec: drain and stop them
  std::vector<std::string> rolled;    // settings changed: replace their replicas (rolling)
  std::vector<std::string> rescaled;  // only `replicas` changed: scale them
  bool pre_start_changed = false;

  bool empty() const {
    return added.empty() && removed.empty() && rolled.empty() && rescaled.empty();
  }
};

SpecDiff diff_specs(const Spec& before, const Spec& after);

}  // namespace deployctl
