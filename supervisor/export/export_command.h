// The `deployctl export` command: arguments, files and exit codes around export.h.
#pragma once

namespace deployctl {

// argv[0] is "export". Exit codes: 0 written; 1 cannot write the output; 2 usage error,
// invalid spec, or a warning under --strict (docs/export.md).
int run_export(int argc, char** argv);

}  // namespace deployctl
