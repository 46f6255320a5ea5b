// ACME for [services.NAME.tls] acme = { ... } (edge; docs/spec.md, "acme"). For each such
// service it keeps
//   - the HTTP-01 listener: a deploy-server on `http_listen` (the supervisor binds the socket),
//     serving /.well-known/acme-challenge/ from a webroot and redirecting everything else to
//     https:// (deploy-server --redirect-https); restarted with backoff if it exits;
//   - lego, the ACME client, run as a supervised one-shot job (timeout, output handed to
//     `on_line`, exit reason kept) when the core's AcmeSchedule says so;
//   - the certificate lego obtained, installed atomically (write + rename) at the service's
//     tls_paths(), where the TLS watch notices it and rolls the replicas (supervisor_tls.cc).
// When to run lego is the pure AcmeSchedule's decision; this class only runs it and reads the
// result. Use from the loop's thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "acme_schedule.h"
#include "asio.h"
#include "child_watcher.h"
#include "json.h"
#include "spec.h"

namespace deployctl {

inline constexpr std::chrono::seconds kLegoTimeout{180};

// Where the ACME account and certificates of deployment `name` live: root's state directory
// (/run/deployctl/NAME) is a tmpfs, so root's go to /var/lib/deployctl/NAME/acme; any other
// state directory (a user's, DEPLOYCTL_RUNTIME_DIR) keeps them in STATE/acme.
std::string acme_state_dir(const std::string& state_dir, const std::string& name);

// How the manager reaches the outside: its programs and where it logs.
struct AcmeEnvironment {
  std::string acme_dir;       // TlsFiles::acme_dir(): STATE/acme, made mode 0700
  std::string deploy_server;  // the HTTP-01 listener's program
  std::string lego = "lego";  // searched on PATH
  // One line of lego's output ("acme | line" in the service's log) or of the listener.
  std::function<void(const std::string& service, const std::string& line, bool is_stderr)> on_line;
};

// What `status` and the metrics show of one service's ACME certificate.
struct AcmeReport {
  std::int64_t last_attempt = 0;  // Unix seconds; 0: none yet
  std::string last_result;        // "ok: ..." or "error: ..."; empty while none finished
  std::int64_t next_attempt = 0;
  int consecutive_failures = 0;
  bool running = false;                           // lego runs now
  std::map<std::string, std::uint64_t> attempts;  // by result: "ok", "error"
};

// What a successor takes over of one acme service, after an upgrade in place or a crash of the
// supervisor (acme_carry.h): the bound http_listen socket, the HTTP-01 listener serving it and,
// after an upgrade, the renewal schedule and the report.
struct AcmeCarried {
  int http_fd = -1;                // owned by the manager once given to start()
  pid_t listener = -1;             // the listener serving http_fd; -1: none
  bool listener_is_child = false;  // true: kept and watched; false (crash): replaced, SIGTERMed
  std::optional<AcmeScheduleState> schedule;  // nullopt: planned from the stored certificate
  AcmeReport report;
};

class AcmeManager {
 public:
  AcmeManager(boost::asio::io_context& io, ChildWatcher& children, AcmeEnvironment environment);
  ~AcmeManager();  // SIGKILLs lego and the listeners
  AcmeManager(const AcmeManager&) = delete;
  AcmeManager& operator=(const AcmeManager&) = delete;

  // Takes up the acme services of `spec`, once, at the supervisor's start (a reload's go
  // through prepare_reload). Binds every http_listen; false with *error (nothing runs)
  // if one cannot be bound. Starts the listeners and plans lego runs: at once where no valid
  // certificate is stored.
  // With `carried` (a service's entry), its socket and listener are taken over instead of bound
  // and started, and its schedule resumes instead of starting afresh.
  bool start(const Spec& spec, std::string* error,
             std::map<std::string, AcmeCarried> carried = {});
  // What each acme service holds now (listener_is_child true): for the upgrade's state and the
  // fd keeper.
  std::map<std::string, AcmeCarried> carried() const;
  // Calls `done` once every acme service has a valid certificate ("" ) or once a first issuance
  // failed (its error). At once when nothing is missing.
  void when_issued(std::function<void(const std::string& error)> done);
  // A reload to `next` (before it is applied): the acme services it adds, or whose acme
  // settings or https port change, get a staged job: its own listener on http_listen (a
  // duplicate of the socket when a current job listens there, else newly bound) and lego at
  // once where no valid certificate is stored, or always when domains or directory change.
  // Calls `done` like when_issued() for the staged jobs (at once with "" when none); what runs
  // is untouched until commit_reload(). False with *error (nothing staged) if an http_listen
  // cannot be bound.
  bool prepare_reload(const Spec& next, std::function<void(const std::string& error)> done,
                      std::string* error);
  std::vector<std::string> staged_services() const;
  // The reload is applied (`spec`: the new spec): staged jobs replace the current ones (their
  // counts carried on), jobs of services without acme stop, the others take the new spec.
  void commit_reload(const Spec& spec);
  void cancel_reload();  // stops the staged jobs; no-op without any
  // `deployctl renew`: runs lego for `service` now. False with *error if it has no acme.
  bool force(const std::string& service, std::string* error);
  // Whether a reload under way has staged new acme settings for `service`: its job gets the
  // certificate those ask for, and the running job neither renews nor may be forced meanwhile.
  bool reload_staged(const std::string& service) const { return staged_.count(service) != 0; }
  std::optional<AcmeReport> report(const std::string& service) const;
  void stop();  // SIGKILLs everything it started; nothing runs afterwards

 private:
  struct Job;
  using Jobs = std::map<std::string, std::unique_ptr<Job>>;
  std::unique_ptr<Job> make_job(const ServiceSpec& service, const Jobs* share_from,
                                std::string* error);
  void begin(Job& job, bool renew_now, const AcmeCarried* from = nullptr);
  void plan(Job& job);
  void run_lego(Job& job);
  void lego_done(Job& job, bool ok, const std::string& message);
  void start_listener(Job& job);
  void take_listener(Job& job, const AcmeCarried* from);
  void watch_listener(Job& job, std::uint64_t run);
  void retry_listener(Job& job, std::uint64_t run);
  void check_issued();
  void retire(Job& job);

  boost::asio::io_context& io_;
  ChildWatcher& children_;
  AcmeEnvironment env_;
  Jobs jobs_;    // by service
  Jobs staged_;  // by service: a reload's, until committed or cancelled
  // Replaced or dropped by a reload, or a cancelled reload's: kept (stopped) so that a callback
  // already queued for one finds it (it then does nothing).
  std::vector<std::unique_ptr<Job>> retired_;
  std::function<void(const std::string&)> issued_;
  std::function<void(const std::string&)> reload_issued_;
  bool stopped_ = false;
};

}  // namespace deployctl
