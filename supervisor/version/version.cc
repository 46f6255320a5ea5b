#include "version.h"

namespace deployctl {

const char* deployctl_version() { return DEPLOYCTL_VERSION; }

}  // namespace deployctl
