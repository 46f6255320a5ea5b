// Internal to export/: systemd unit file syntax (systemd.unit(5), systemd.service(5)).
#pragma once

#include <string>
#include <vector>

#include "spec.h"

namespace deployctl::exporter::unit {

// One word of an Exec*= line: quoted when needed, '%' doubled (specifier) and '$' doubled
// (variable expansion) so that systemd passes it unchanged.
std::string exec_word(const std::string& word);

// A spec word with {replica} -> %i and {port} -> ${DEPLOYCTL_PORT} (set per instance),
// "{{"/"}}" -> braces, the rest escaped as exec_word does.
std::string template_word(const std::string& word);
inline constexpr const char* kPortVariable = "DEPLOYCTL_PORT";

// Words already made by exec_word / template_word, joined.
std::string exec_line(const std::vector<std::string>& words);

// Environment="KEY=VALUE", the value taken literally ('%' doubled).
std::string environment(const std::string& key, const std::string& value);
// Environment="KEY=VALUE" with {replica} -> %i in the value (no {port}: see kPortVariable).
std::string environment_template(const std::string& key, const std::string& value);

// text with '%' doubled, for free-text settings such as Description=.
std::string no_specifiers(const std::string& text);

// A time span systemd reads: "30s", "250ms".
std::string timespan(Duration duration);

// A unit name part: characters outside [A-Za-z0-9:_.-] escaped as \xNN (systemd-escape).
std::string escape_name(const std::string& text);

}  // namespace deployctl::exporter::unit
