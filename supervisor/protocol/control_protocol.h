// The worker control protocol: supervisor <-> replica over one AF_UNIX SOCK_SEQPACKET
// socketpair per replica. The replica's end is the inherited fd named by DEPLOYCTL_CONTROL_FD.
//
// Every datagram is one message of sd_notify-style lines "KEY=VALUE", separated by '\n'
// (a trailing '\n' is allowed). At most kMaxMessage bytes; a longer datagram is a protocol
// violation. Keys are [A-Z0-9_]+; values are printable bytes (no control characters).
// Unknown keys are ignored by both sides, so either side can grow.
//
// worker -> supervisor
//   READY=1        the replica accepts requests (it is "ready" only after this)
//   STATUS=<text>  free-form status shown by `deployctl status`
//   WATCHDOG=1     liveness heartbeat (sd_notify compatibility)
//   STOPPING=1     the replica has begun to shut down (after DRAIN=1 or SIGTERM)
//   PONG=<seq>     answer to PING=<seq>; may carry REQUESTS=<n> (served so far) and
//                  INFLIGHT=<n> (requests in progress) in the same datagram
// supervisor -> worker
//   PING=<seq>     health probe; answer with PONG=<seq> within health.timeout
//   DRAIN=1        stop accepting, finish in-flight work, exit 0
// EOF on the socket means the other side is gone: a worker whose supervisor disappeared drains.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace deployctl::control {

inline constexpr std::size_t kMaxMessage = 4096;
inline constexpr const char* kControlFdEnv = "DEPLOYCTL_CONTROL_FD";
inline constexpr const char* kServiceEnv = "DEPLOYCTL_SERVICE";
inline constexpr const char* kReplicaEnv = "DEPLOYCTL_REPLICA";
// TLS for the replica: its certificate chain and key files (PEM). deploy-server serves HTTPS
// on every listener when both are set.
inline constexpr const char* kTlsCertEnv = "DEPLOYCTL_TLS_CERT";
inline constexpr const char* kTlsKeyEnv = "DEPLOYCTL_TLS_KEY";
// Optional: an 80-byte session ticket key file shared by the replicas of a service, so a TLS
// session resumes on whichever replica accepts the connection.
inline constexpr const char* kTlsTicketKeyEnv = "DEPLOYCTL_TLS_TICKET_KEY";

using Fields = std::vector<std::pair<std::string, std::string>>;

// A decoded datagram. Only the fields this side understands are typed; the rest are ignored.
struct Message {
  bool ready = false;
  bool watchdog = false;
  bool stopping = false;
  bool drain = false;
  std::optional<std::string> status;
  std::optional<std::uint64_t> ping;
  std::optional<std::uint64_t> pong;
  std::optional<std::uint64_t> requests;
  std::optional<std::uint64_t> inflight;
};

struct DecodeResult {
  std::optional<Message> message;  // empty on error
  std::string error;               // what was wrong, for the log; empty on success
};

// Pure; never throws; any byte sequence is safe input.
DecodeResult decode(std::string_view datagram);

// Splits a datagram into KEY=VALUE pairs; nullopt (with *error set) if malformed.
std::optional<Fields> split_fields(std::string_view datagram, std::string* error);

std::string encode_ping(std::uint64_t seq);
std::string encode_drain();
std::string encode_pong(std::uint64_t seq, std::uint64_t requests, std::uint64_t inflight);
inline std::string encode_ready() { return "READY=1\n"; }
inline std::string encode_stopping() { return "STOPPING=1\n"; }

}  // namespace deployctl::control
