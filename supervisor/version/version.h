// The version this deployctl binary reports (`--version`, `status`, metrics, upgrade logs).
// Compiled into one translation unit of its own, so that a build of another version
// (-DDEPLOYCTL_VERSION=..., e.g. the newer package of the upgrade test) recompiles one file.
#pragma once

namespace deployctl {

const char* deployctl_version();

}  // namespace deployctl
