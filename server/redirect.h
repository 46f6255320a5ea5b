// deploy-server --redirect-https PORT: the HTTP-01 listener's behaviour (docs/spec.md, "acme").
// Pure: looks only at the request.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "request_parser.h"

namespace deployctl::http {

// ACME HTTP-01 answers live under this path; a redirecting server still serves it from --root.
inline constexpr std::string_view kAcmeChallengePrefix = "/.well-known/acme-challenge/";

// The Location of the 308 that sends `request` to https://: the request's Host without its port
// (then ":https_port" unless it is 443), its path and its query, as sent. nullopt when the Host
// field is missing, repeated or not a plain host[:port] (the answer is then 400).
std::optional<std::string> https_location(const Request& request, int https_port);

}  // namespace deployctl::http
