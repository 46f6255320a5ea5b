// The replica cgroups (tree_cgroup.h) of a supervisor that died, for leftovers.h.
#pragma once

#include <string>
#include <vector>

namespace deployctl {

// What a dead supervisor of the deployment left in its replicas' cgroups (descendants that
// escaped their process groups) is killed, and the cgroups removed (bounded, ~1 s). Nothing if
// cgroups are not writable or the deployment has none. Call under the deployment's lock, with
// no supervisor of it running (`up` before it starts, `down` without one). With `only`, just
// the cgroups of those replica ids (strays next to replicas a new `up` adopts).
void remove_deployment_cgroups(const std::string& deployment, const std::string& state_dir,
                               const std::vector<std::string>* only = nullptr);

}  // namespace deployctl
