// Loading deploy.toml into a validated Spec, and the small value parsers the spec uses.
// Every function here is pure (apart from reading the file in load_spec_file, the working
// directory for relative paths, and the CPU count for replicas = "auto") and never throws.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spec.h"

namespace deployctl {

// One problem in a spec file. Positions are 1-based; 0 when unknown.
struct SpecError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key;      // dotted path, e.g. "services.web.restart.backoff.initial"; "" for syntax
  std::string message;  // what is wrong and what would be right

  // "FILE:LINE:COL: KEY: MESSAGE"; "KEY: " is omitted when key is empty, ":LINE:COL" when
  // the position is unknown.
  std::string to_string() const;
};

// Where each key of a valid spec was written: dotted key path as in SpecError::key
// ("services.web.health.interval", "pre_start[0].command") -> 1-based line and column.
struct SourcePosition {
  int line = 0;
  int column = 0;
};
using SourceMap = std::map<std::string, SourcePosition>;

// Exactly one of spec / errors is non-empty. errors are sorted by (line, column). positions
// is filled when spec is.
struct LoadResult {
  std::optional<Spec> spec;
  std::vector<SpecError> errors;
  SourceMap positions;
};

// Reads and validates the file. An unreadable file is reported as an error; Spec::path is the
// absolute path of the file.
LoadResult load_spec_file(const std::string& path);

// The deployment name a spec file gives, even if the spec is invalid in other ways (so that
// `status` and `down` still find a running deployment whose file is being edited): `name`,
// else the file's stem. nullopt if the file cannot be read or is not TOML.
std::optional<std::string> deployment_name(const std::string& path);

// Validates toml_text as if it were the file at file_path: file_path names the file in errors,
// gives the default spec name (its stem) and is the base for relative paths in the spec.
LoadResult parse_spec(std::string_view toml_text, const std::string& file_path);

// "100ms", "1s", "1.5s", "2m", "1h", "1m30s" (units largest first, each at most once).
// Must be a whole number of milliseconds, at most one year. On failure *error says why.
std::optional<Duration> parse_duration(std::string_view text, std::string* error);

// "512MiB", "1G", "64K", "1.5G", "1024": K/M/G/T and KiB/MiB/GiB/TiB are 1024-based (as in
// systemd), a trailing "B" is optional, case does not matter. Fractions are truncated to bytes.
std::optional<std::uint64_t> parse_size(std::string_view text, std::string* error);

// Shell-like word splitting, never run by a shell: blanks separate words; '...' is literal;
// "..." honours \" \\ \$ \` and \newline; a backslash outside quotes escapes the next character.
// Nothing is expanded ($, ~, * stay as written). Errors: unterminated quote, trailing
// backslash, no words at all, or an unquoted shell operator word such as "&&" or "|".
std::vector<std::string> split_command(std::string_view text, std::string* error);

// Replaces {replica} and, when port is set, {port} (this replica's own port, already offset);
// "{{" and "}}" become literal braces. Any other {x} is left as written (the loader rejects it).
std::string expand_placeholders(std::string_view text, int replica, std::optional<int> port);

// What the placeholders of one replica's command and env stand for.
struct PlaceholderValues {
  int replica = 0;
  std::optional<int> port;              // this replica's own port, already offset
  std::optional<std::string> tls_cert;  // the certificate chain file the replica loads
  std::optional<std::string> tls_key;   // and its key (see tls_paths)
};

// The overload above plus {tls_cert} and {tls_key} when set; unset ones stay as written.
std::string expand_placeholders(std::string_view text, const PlaceholderValues& values);

// The files a service's replicas load: cert/key as given, or for acme the files the ACME
// client (lego --path acme_dir) writes: ACME_DIR/certificates/DOMAIN.crt and .key, DOMAIN
// being the first of acme.domains. nullopt without [tls].
struct TlsPaths {
  std::string cert;
  std::string key;
};
std::optional<TlsPaths> tls_paths(const ServiceSpec& service, std::string_view acme_dir);

// "SIGTERM", "TERM", "sigterm" or "15". Numbers are accepted from 1 to NSIG - 1.
std::optional<int> parse_signal(std::string_view text);

// 15 -> "SIGTERM"; a number without a standard name is returned as digits ("40").
std::string signal_name(int signal);

}  // namespace deployctl
