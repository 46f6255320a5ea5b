// Health probes that look at a replica from outside (edge): an HTTP GET, a TCP connect, or a
// command run to completion. Each probe is one asynchronous attempt with a deadline; deciding
// what a run of passes and misses means stays with HealthChecker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asio.h"
#include "child_watcher.h"
#include "http_probe_connection.h"  // parse_status_line
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

class HttpProbeConnection;  // http_probe.h

// One replica's kept-open `http` probe connection, reused across its checks while the server
// keeps it alive. close() (or destruction) closes the socket at once; a check in flight on it
// then fails, on the loop. Close it when the replica's process ends.
class KeptProbeConnection {
 public:
  KeptProbeConnection() = default;
  KeptProbeConnection(const KeptProbeConnection&) = delete;
  KeptProbeConnection& operator=(const KeptProbeConnection&) = delete;
  ~KeptProbeConnection() { close(); }

  void close();

 private:
  friend void start_probe(boost::asio::io_context&, ChildWatcher&, const ProbeTarget&, Duration,
                          ProbeDone, KeptProbeConnection*);
  std::shared_ptr<HttpProbeConnection> connection_;
};

// Starts one probe on `io`; `done` is called exactly once, on the loop (never from inside this
// call), within `timeout` (+ a few ms). On timeout the probe is abandoned: its socket closed,
// or the exec probe's process group SIGKILLed. An http probe with `kept` sends its request on
// that connection (opening it if needed; a one-off connection while a check is already in
// flight on it); without, on a one-off connection. Precondition: `io` is run by one thread,
// and it and `children` (and `kept`) outlive the probe's start; if the loop is destroyed
// first, `done` is never called.
void start_probe(boost::asio::io_context& io, ChildWatcher& children, const ProbeTarget& target,
                 Duration timeout, ProbeDone done, KeptProbeConnection* kept = nullptr);

}  // namespace deployctl
