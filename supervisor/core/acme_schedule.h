// When the supervisor runs the ACME client (lego) for one [tls] acme service: issue when no valid
// certificate is stored, renew once a third of the certificate's lifetime is left (a little
// earlier by a random jitter, so many services do not renew in the same second), retry a failed
// attempt with exponential backoff. Pure: wall-clock time (Unix seconds) and randomness are
// passed in; the daemon runs lego when due and feeds the outcome back.
#pragma once

#include <cstdint>
#include <optional>

namespace deployctl {

struct AcmePolicy {
  std::int64_t jitter_max = 3600;     // renew up to this much before the renewal point
  std::int64_t retry_initial = 60;    // the first retry after a failure
  std::int64_t retry_max = 6 * 3600;  // retries back off, doubling, up to this
  std::int64_t min_interval = 10;     // never two attempts closer than this
};

// The validity of the stored certificate (Unix seconds).
struct CertificateLifetime {
  std::int64_t not_before = 0;
  std::int64_t not_after = 0;
};

// What the schedule remembers: a plain value.
struct AcmeScheduleState {
  std::optional<CertificateLifetime> certificate;  // the stored one; nullopt: none that loads
  int consecutive_failures = 0;
  std::int64_t last_attempt = 0;  // start of the last attempt; 0: none yet
  std::int64_t next_attempt = 0;  // when the daemon should run lego next
};

class AcmeSchedule {
 public:
  explicit AcmeSchedule(AcmePolicy policy = {}, AcmeScheduleState state = {})
      : policy_(policy), state_(state) {}

  // The stored certificate as found at start (nullopt: none, or one that does not load);
  // plans the first attempt: at once without a certificate valid at `now`.
  void start(std::optional<CertificateLifetime> stored, std::int64_t now, double random01);
  // An attempt starts at `now` (the daemon runs lego).
  void attempt_started(std::int64_t now);
  // The attempt succeeded with a new certificate: plan its renewal.
  void succeeded(CertificateLifetime renewed, std::int64_t now, double random01);
  // The attempt failed: retry with backoff (the old certificate, if any, keeps serving).
  void failed(std::int64_t now, double random01);
  // A forced renewal (`deployctl renew`): due now.
  void force(std::int64_t now);

  bool due(std::int64_t now) const { return now >= state_.next_attempt; }
  // Whether a certificate valid at `now` is stored (replicas may start).
  bool has_valid(std::int64_t now) const;
  const AcmeScheduleState& state() const { return state_; }

 private:
  std::int64_t renewal_time(const CertificateLifetime& life, double random01) const;
  std::int64_t retry_delay(int failures, double random01) const;

  AcmePolicy policy_;
  AcmeScheduleState state_;
};

}  // namespace deployctl
