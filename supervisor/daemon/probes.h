// Health probes that look at a replica from outside (edge): an HTTP GET, a TCP connect, or a
// command run to completion. Each probe is one asynchronous attempt with a deadline; deciding
// what a run of passes and misses means stays with HealthChecker.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asio.h"
#include "child_watcher.h"
#include "spec.h"

namespace deployctl {

struct ProbeTarget {
  HealthKind kind;                    // http | tcp | exec (config/spec.h)
  std::string host;                   // numeric IPv4/IPv6 (http, tcp)
  std::uint16_t port = 0;             // (http, tcp)
  std::string path;                   // http
  bool tls = false;                   // http: over TLS (the service has [tls]); not verified
  std::vector<std::string> argv;      // exec, already expanded; argv[0] resolved or a path
  std::vector<std::string> env;       // exec: the whole environment, "K=V"
  std::string working_dir;            // exec
};

// `detail` says what was seen: "HTTP 503", "connection refused", "exit code 1",
// "timed out after 500ms".
struct ProbeResult {
  bool ok = false;
  std::string detail;
};

using ProbeDone = std::function<void(ProbeResult)>;

// Starts one probe on `io`; `done` is called exactly once, on the loop (never from inside this
// call), within `timeout` (+ a few ms). On timeout the probe is abandoned: its socket closed,
// or the exec probe's process group SIGKILLed. Precondition: `io` is run by one thread, and it
// and `children` outlive the probe; if the loop is destroyed first, `done` is never called.
void start_probe(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                 Duration timeout, ProbeDone done);

// Pure: the status code of an HTTP/1.x status line ("HTTP/1.1 204 No Content"), or nullopt.
// A trailing CR or CRLF is allowed.
std::optional<int> parse_status_line(std::string_view line);

}  // namespace deployctl
