#include "router.h"

#include "ascii.h"
#include "redirect.h"

namespace deployctl::http {
namespace {

constexpr std::string_view kSleepPrefix = "/sleep/";

Route sleep_route(std::string_view digits) {
  if (digits.empty()) return {RouteKind::not_found};
  for (char c : digits) {
    if (!is_digit(c)) return {RouteKind::not_found};
  }
  if (digits.size() > 9) return {RouteKind::bad_request};  // over the limit; would overflow
  std::uint32_t ms = 0;
  for (char c : digits) ms = ms * 10 + static_cast<std::uint32_t>(c - '0');
  if (ms > kMaxSleepMs) return {RouteKind::bad_request};
  return {RouteKind::sleep, ms};
}

}  // namespace

Route route(const Request& request, RouteOptions options) {
  if (options.redirect_https) {
    const bool challenge = (request.method == Method::get || request.method == Method::head) &&
                           request.path.starts_with(kAcmeChallengePrefix);
    if (!challenge) return {RouteKind::redirect_https};
    return {options.has_root ? RouteKind::static_file : RouteKind::not_found};
  }
  if (request.method != Method::get && request.method != Method::head) {
    return {RouteKind::method_not_allowed};
  }
  std::string_view path = request.path;
  if (path.empty() || path.front() != '/') return {RouteKind::bad_request};
  if (path == "/healthz") return {RouteKind::health};
  if (path == "/whoami") return {RouteKind::whoami};
  if (path == "/") return {RouteKind::index};
  if (options.debug_endpoints && path.starts_with(kSleepPrefix)) {
    return sleep_route(path.substr(kSleepPrefix.size()));
  }
  return {options.has_root ? RouteKind::static_file : RouteKind::not_found};
}

}  // namespace deployctl::http
