// Which built-in route answers a request. Pure: looks only at the method and path.
#pragma once

#include <cstdint>

#include "request_parser.h"

namespace deployctl::http {

inline constexpr std::uint32_t kMaxSleepMs = 10000;

enum class RouteKind {
  health,              // GET /healthz
  whoami,              // GET /whoami
  index,               // GET /: <root>/index.html if present, else the banner
  static_file,         // any other path, with a document root
  sleep,               // GET /sleep/<ms>, debug endpoints only
  not_found,           // any other path, without a document root
  method_not_allowed,  // a method other than GET and HEAD
  bad_request,         // a target that is not a path, or a sleep over kMaxSleepMs
  redirect_https,      // --redirect-https: anything but an ACME HTTP-01 challenge file
};

struct Route {
  RouteKind kind = RouteKind::not_found;
  std::uint32_t sleep_ms = 0;  // kind == sleep only
};

struct RouteOptions {
  bool has_root = false;
  bool debug_endpoints = false;
  bool redirect_https = false;  // only kAcmeChallengePrefix is served; the rest redirects
};

Route route(const Request& request, RouteOptions options);

}  // namespace deployctl::http
