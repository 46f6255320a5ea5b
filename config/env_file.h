// env_file: KEY=VALUE lines, as systemd's EnvironmentFile= and docker's --env-file read them.
// Pure. Blank lines and lines starting with '#' or ';' are skipped; an optional "export "
// prefix is allowed; a value in "double" (with \" \\ \n escapes) or 'single' quotes is
// unquoted; otherwise the value is taken as written, surrounding white space trimmed.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "spec.h"

namespace deployctl {

// nullopt with *error ("line 3: ...") for a malformed file.
std::optional<EnvList> parse_env_file(std::string_view text, std::string* error);

}  // namespace deployctl
