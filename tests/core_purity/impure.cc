// Not compiled: the sample that cmake/check_core_includes.cmake must reject (ctest
// core_purity.rejects_io). A core file like this one fails the build.
#include <unistd.h>
#include <boost/asio.hpp>

#include "replica_machine.h"

namespace deployctl {
TimePoint sneaky_now() { return Clock::now(); }
}  // namespace deployctl
