#include "acme_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include "certificate.h"
#include "listen_sockets.h"
#include "load.h"
#include "pre_start.h"
#include "process.h"
#include "read_file.h"

namespace deployctl {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kMaxPemBytes = 1 << 20;
constexpr std::int64_t kMaxTimerSeconds = 3600;  // wall clock is re-read at least hourly
constexpr int kMaxListenerDelaySeconds = 30;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool make_private_dir(const std::string& path, std::string* error) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    *error = "cannot create " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

// ACME_DIR's parent (root: /var/lib/deployctl/NAME, made here), ACME_DIR and its certificates,
// each mode 0700 when made.
bool make_acme_dirs(const std::string& acme_dir, std::string* error) {
  const std::filesystem::path parent = std::filesystem::path(acme_dir).parent_path();
  std::error_code ignored;
  std::filesystem::create_directories(parent.parent_path(), ignored);
  return make_private_dir(parent.string(), error) && make_private_dir(acme_dir, error) &&
         make_private_dir(acme_dir + "/certificates", error);
}

// The port replica 0 serves HTTPS on: where the listener redirects to.
int https_port(const ServiceSpec& spec) {
  if (!spec.listen.empty()) return spec.listen.front().port;
  return spec.port.value_or(443);
}

// The lifetime of a certificate + key pair that loads and matches, else nullopt.
std::optional<CertificateLifetime> pair_lifetime(const std::string& cert, const std::string& key,
                                                 std::string* why) {
  FileRead cert_pem = read_file(cert, kMaxPemBytes), key_pem = read_file(key, kMaxPemBytes);
  if (!cert_pem.ok() || !key_pem.ok()) {
    *why = cert_pem.ok() ? key_pem.error : cert_pem.error;
    return std::nullopt;
  }
  auto facts = inspect_certificate(cert_pem.text);
  if (auto* error = std::get_if<std::string>(&facts)) {
    *why = cert + ": " + *error;
    return std::nullopt;
  }
  if (auto mismatch = key_mismatch(cert_pem.text, key_pem.text)) {
    *why = key + ": " + *mismatch;
    return std::nullopt;
  }
  const auto& known = std::get<CertificateFacts>(facts);
  return CertificateLifetime{known.not_before, known.not_after};
}

// Writes `bytes` to `path` atomically (a temporary file renamed over it) with `mode`, owned by
// `owner` when given.
bool write_atomically(const std::string& path, const std::string& bytes, mode_t mode,
                      const std::optional<SpawnRequest::Credentials>& owner, std::string* error) {
  const std::string temporary = path + ".new";
  int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  bool ok =
      fd >= 0 && fchmod(fd, mode) == 0 && (!owner || fchown(fd, owner->uid, owner->gid) == 0) &&
      write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) && fsync(fd) == 0;
  if (!ok) *error = "cannot write " + temporary + ": " + std::strerror(errno);
  if (fd >= 0) close(fd);
  if (ok && rename(temporary.c_str(), path.c_str()) != 0) {
    *error = "cannot rename " + temporary + " to " + path + ": " + std::strerror(errno);
    ok = false;
  }
  if (!ok) unlink(temporary.c_str());
  return ok;
}

std::string lego_certificate_base(const std::string& lego_dir, const AcmeSpec& acme) {
  return lego_dir + "/certificates/" + acme.domains.front();
}

}  // namespace

std::string acme_state_dir(const std::string& state_dir, const std::string& name) {
  if (state_dir == "/run/deployctl/" + name) return "/var/lib/deployctl/" + name + "/acme";
  return state_dir + "/acme";
}

struct AcmeManager::Job {
  Job(asio::io_context& io, ServiceSpec service_spec)
      : spec(std::move(service_spec)), timer(io), listener_timer(io) {}
  const AcmeSpec& acme() const { return *spec.tls->acme; }

  ServiceSpec spec;
  AcmeSchedule schedule;
  asio::steady_timer timer;  // the next lego run
  std::unique_ptr<PreStartRunner> lego;
  std::vector<ListenSocket> http;  // http_listen, bound by the supervisor
  pid_t listener = -1;
  std::uint64_t listener_run = 0;
  int listener_failures = 0;
  asio::steady_timer listener_timer;
  AcmeReport report;
  bool retired = false;  // stopped for good (retire())
};

AcmeManager::AcmeManager(asio::io_context& io, ChildWatcher& children, AcmeEnvironment environment)
    : io_(io), children_(children), env_(std::move(environment)) {}

AcmeManager::~AcmeManager() { stop(); }

bool AcmeManager::start(const Spec& spec, std::string* error,
                        std::map<std::string, AcmeCarried> carried) {
  error->clear();
  for (const auto& service : spec.services) {
    if (!service.tls || !service.tls->acme) continue;
    std::unique_ptr<Job> job;
    if (auto given = carried.find(service.name);
        given != carried.end() && given->second.http_fd >= 0) {
      job = std::make_unique<Job>(io_, service);
      job->http.push_back({job->acme().http_listen, std::exchange(given->second.http_fd, -1)});
    } else if (!(job = make_job(service, nullptr, error))) {
      break;
    }
    jobs_[service.name] = std::move(job);
  }
  if (error->empty() && !jobs_.empty()) make_acme_dirs(env_.acme_dir, error);
  if (!error->empty()) {
    for (auto& [name, given] : carried) {
      if (given.http_fd >= 0) close(given.http_fd);
    }
    stop();
    return false;
  }
  for (auto& [name, job] : jobs_) {
    auto given = carried.find(name);
    begin(*job, false, given == carried.end() ? nullptr : &given->second);
  }
  return true;
}

std::map<std::string, AcmeCarried> AcmeManager::carried() const {
  std::map<std::string, AcmeCarried> now;
  for (const auto& [name, job] : jobs_) {
    now[name] = {job->http.empty() ? -1 : job->http.front().fd, job->listener, true,
                 job->schedule.state(), job->report};
  }
  return now;
}

// A job for `service` with its http_listen socket: a duplicate of the one a job of
// `share_from` holds on the same address, else newly bound. nullptr with *error.
std::unique_ptr<AcmeManager::Job> AcmeManager::make_job(const ServiceSpec& service,
                                                        const Jobs* share_from,
                                                        std::string* error) {
  auto job = std::make_unique<Job>(io_, service);
  const ListenAddress& address = job->acme().http_listen;
  static const Jobs kNone;
  for (const auto& [name, current] : share_from ? *share_from : kNone) {
    const ListenAddress& held = current->acme().http_listen;
    if (current->http.empty() || held.host != address.host || held.port != address.port) continue;
    ListenSocket copy = current->http.front();
    copy.fd = fcntl(copy.fd, F_DUPFD_CLOEXEC, 3);
    if (copy.fd < 0) {
      *error = service.name + ": acme.http_listen: " + std::strerror(errno);
      return nullptr;
    }
    job->http = {copy};
    return job;
  }
  job->http = bind_listen_sockets({address}, error);
  if (!error->empty()) {
    *error = service.name + ": acme.http_listen: " + *error;
    return nullptr;
  }
  return job;
}

// Starts (or, with `from`, takes over) the job's listener and plans its lego runs: at once
// where no valid certificate is stored, or with `renew_now` (the stored one is not taken as
// valid). An upgrade's carried schedule goes on counting its attempts and failures.
void AcmeManager::begin(Job& job, bool renew_now, const AcmeCarried* from) {
  take_listener(job, from);
  if (from && from->schedule) {
    job.schedule = AcmeSchedule({}, *from->schedule);
    job.report = from->report;
    return plan(job);
  }
  std::optional<CertificateLifetime> stored;
  if (!renew_now) {
    const auto paths = tls_paths(job.spec, env_.acme_dir);
    std::string why;
    stored = pair_lifetime(paths->cert, paths->key, &why);
  }
  std::mt19937_64 random{std::random_device{}()};
  job.schedule.start(stored, unix_now(), std::uniform_real_distribution<double>(0, 1)(random));
  plan(job);
}

void AcmeManager::when_issued(std::function<void(const std::string& error)> done) {
  issued_ = std::move(done);
  check_issued();
}

namespace {

// "" once every job has a valid certificate, the error of one whose attempt failed, or nullopt
// while one is still trying.
template <typename Jobs>
std::optional<std::string> issue_outcome(const Jobs& jobs) {
  const std::int64_t now = unix_now();
  for (const auto& [name, job] : jobs) {
    if (job->schedule.has_valid(now)) continue;
    if (job->schedule.state().consecutive_failures == 0) return std::nullopt;  // still trying
    return name + ": no certificate could be obtained: " + job->report.last_result;
  }
  return "";
}

}  // namespace

void AcmeManager::check_issued() {
  for (auto [done, jobs] : {std::pair{&issued_, &jobs_}, std::pair{&reload_issued_, &staged_}}) {
    if (!*done) continue;
    if (auto outcome = issue_outcome(*jobs)) std::exchange(*done, nullptr)(*outcome);
  }
}

bool AcmeManager::prepare_reload(const Spec& next, std::function<void(const std::string&)> done,
                                 std::string* error) {
  error->clear();
  cancel_reload();
  std::map<std::string, bool> renew_now;  // by service
  for (const auto& service : next.services) {
    if (!service.tls || !service.tls->acme) continue;
    const AcmeSpec& acme = *service.tls->acme;
    auto current = jobs_.find(service.name);
    bool renew = false;
    if (current != jobs_.end()) {
      const Job& job = *current->second;
      if (job.acme() == acme && https_port(job.spec) == https_port(service)) continue;
      if (job.lego) {  // two legos of one service could install each other's certificate
        *error = "a certificate request for '" + service.name +
                 "' is under way (deployctl status shows it); reload again once it has ended";
        break;
      }
      renew = job.acme().domains != acme.domains || job.acme().directory != acme.directory;
    }
    auto job = make_job(service, &jobs_, error);
    if (!job) break;
    staged_[service.name] = std::move(job);
    renew_now[service.name] = renew;
  }
  if (error->empty() && !staged_.empty()) make_acme_dirs(env_.acme_dir, error);
  if (!error->empty()) {
    cancel_reload();
    return false;
  }
  for (auto& [name, job] : staged_) {
    // The running job waits: no scheduled attempt of its own until the reload ends.
    if (auto current = jobs_.find(name); current != jobs_.end()) current->second->timer.cancel();
    spdlog::info("{}: acme: the reload's settings start before it applies (HTTP-01 listener on "
                 "{}{})",
                 name, job->acme().http_listen.text,
                 renew_now[name] ? "; a new certificate for the new domains or directory" : "");
    begin(*job, renew_now[name]);
  }
  reload_issued_ = std::move(done);
  check_issued();
  return true;
}

std::vector<std::string> AcmeManager::staged_services() const {
  std::vector<std::string> names;
  for (const auto& [name, job] : staged_) names.push_back(name);
  return names;
}

void AcmeManager::commit_reload(const Spec& spec) {
  reload_issued_ = nullptr;
  for (auto& [name, job] : staged_) {
    if (auto current = jobs_.find(name); current != jobs_.end()) {
      const AcmeReport& before = current->second->report;
      for (const auto& [result, count] : before.attempts) job->report.attempts[result] += count;
      if (!job->report.last_attempt) {
        job->report.last_attempt = before.last_attempt;
        job->report.last_result = before.last_result;
      }
      retire(*current->second);
      retired_.push_back(std::move(current->second));
    }
    jobs_[name] = std::move(job);
  }
  staged_.clear();
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    const ServiceSpec* service = spec.find_service(it->first);
    if (service && service->tls && service->tls->acme) {
      it->second->spec = *service;  // e.g. a new `user` owns the next key installed
      ++it;
      continue;
    }
    spdlog::info("{}: acme: no longer in the spec; its HTTP-01 listener stops", it->first);
    retire(*it->second);
    retired_.push_back(std::move(it->second));
    it = jobs_.erase(it);
  }
}

void AcmeManager::cancel_reload() {
  reload_issued_ = nullptr;
  for (auto& [name, job] : staged_) {
    retire(*job);
    retired_.push_back(std::move(job));
    if (auto current = jobs_.find(name); current != jobs_.end()) plan(*current->second);
  }
  staged_.clear();
}

bool AcmeManager::force(const std::string& service, std::string* error) {
  auto job = jobs_.find(service);
  if (job == jobs_.end()) {
    *error = "service '" + service + "' has no [services." + service + ".tls] acme";
    return false;
  }
  job->second->schedule.force(unix_now());
  if (!job->second->lego) run_lego(*job->second);  // else: the running attempt serves it
  return true;
}

std::optional<AcmeReport> AcmeManager::report(const std::string& service) const {
  auto job = jobs_.find(service);
  if (job == jobs_.end()) return std::nullopt;
  AcmeReport report = job->second->report;
  report.next_attempt = job->second->schedule.state().next_attempt;
  report.consecutive_failures = job->second->schedule.state().consecutive_failures;
  report.running = job->second->lego != nullptr;
  return report;
}

void AcmeManager::stop() {
  if (stopped_) return;
  stopped_ = true;
  issued_ = nullptr;
  reload_issued_ = nullptr;
  for (auto& [name, job] : jobs_) retire(*job);
  for (auto& [name, job] : staged_) retire(*job);
}

// Stops everything the job runs; none of its callbacks runs afterwards.
void AcmeManager::retire(Job& job) {
  job.retired = true;
  ++job.listener_run;
  job.timer.cancel();
  job.listener_timer.cancel();
  job.lego.reset();  // SIGKILLs lego's group
  if (job.listener > 0) {
    children_.forget(job.listener);
    signal_group(job.listener, SIGKILL);
    job.listener = -1;
  }
  close_listen_sockets(job.http);
}

// Arms the job's timer for its next lego run (re-checked at least hourly: the schedule is in
// wall-clock time, the timer in steady time).
void AcmeManager::plan(Job& job) {
  if (stopped_ || job.retired || job.lego) return;
  const std::int64_t wait =
      std::clamp<std::int64_t>(job.schedule.state().next_attempt - unix_now(), 0, kMaxTimerSeconds);
  job.timer.expires_after(std::chrono::seconds(wait));
  job.timer.async_wait([this, &job](boost::system::error_code ec) {
    if (ec || stopped_) return;
    if (job.schedule.due(unix_now())) {
      run_lego(job);
    } else {
      plan(job);
    }
  });
}

void AcmeManager::run_lego(Job& job) {
  job.timer.cancel();
  const std::string name = job.spec.name;
  const std::string webroot = env_.acme_dir + "/webroot-" + name;
  std::string error;
  make_private_dir(webroot, &error);
  chmod(webroot.c_str(), 0755);  // the listener serves it; the state directory stays 0700
  const AcmeSpec& acme = job.acme();
  PreStartStep step{"acme",
                    {env_.lego, "--accept-tos", "--server", acme.directory, "--path",
                     env_.acme_dir + "/lego", "--http", "--http.webroot", webroot}};
  if (!acme.email.empty()) step.command.insert(step.command.end(), {"--email", acme.email});
  for (const auto& domain : acme.domains) {
    step.command.insert(step.command.end(), {"--domains", domain});
  }
  step.command.push_back("run");
  step.timeout = std::chrono::duration_cast<Duration>(kLegoTimeout);
  if (!acme.ca_root.empty()) step.env.emplace_back("LEGO_CA_CERTIFICATES", acme.ca_root);
  step.working_dir = env_.acme_dir;

  const std::int64_t now = unix_now();
  job.schedule.attempt_started(now);
  job.report.last_attempt = now;
  spdlog::info("{}: acme: requesting a certificate for {} from {}", name, acme.domains.front(),
               acme.directory);
  job.lego = std::make_unique<PreStartRunner>(
      io_, children_, std::vector<PreStartStep>{step},
      [this, name](const std::string&, const std::string& line, bool is_stderr) {
        if (env_.on_line) env_.on_line(name, line, is_stderr);
      },
      [this, &job](PreStartResult result) {
        std::string message = result.message;
        if (auto at = message.find("failed: "); at != std::string::npos) {
          message = "lego " + message.substr(
                                  at);  // "pre_start step 'acme' failed: ..." -> "lego failed: ..."
        }
        if (!result.ok && !result.last_lines.empty()) message += ": " + result.last_lines.back();
        asio::post(io_, [this, &job, ok = result.ok, message] {
          job.lego.reset();
          lego_done(job, ok, message);
        });
      });
  job.lego->start();
}

void AcmeManager::lego_done(Job& job, bool ok, const std::string& lego_error) {
  if (stopped_ || job.retired) return;
  const std::string& name = job.spec.name;
  std::string error = lego_error;
  std::optional<CertificateLifetime> lifetime;
  if (ok) {
    const std::string from = lego_certificate_base(env_.acme_dir + "/lego", job.acme());
    lifetime = pair_lifetime(from + ".crt", from + ".key", &error);
    const auto paths = tls_paths(job.spec, env_.acme_dir);
    std::optional<SpawnRequest::Credentials> owner;
    if (geteuid() == 0 && !job.spec.user.empty()) {
      owner = lookup_credentials(job.spec.user, job.spec.group, &error);
    }
    const bool installed =
        lifetime && (geteuid() != 0 || job.spec.user.empty() || owner) &&
        write_atomically(paths->key, read_file(from + ".key", kMaxPemBytes).text, 0600, owner,
                         &error) &&
        write_atomically(paths->cert, read_file(from + ".crt", kMaxPemBytes).text, 0644, owner,
                         &error);
    if (!installed) lifetime.reset();
  }
  std::mt19937_64 random{std::random_device{}()};
  const double random01 = std::uniform_real_distribution<double>(0, 1)(random);
  const std::int64_t now = unix_now();
  if (lifetime) {
    job.schedule.succeeded(*lifetime, now, random01);
    job.report.last_result = "ok: certificate valid until " + format_utc(lifetime->not_after);
    ++job.report.attempts["ok"];
    spdlog::info("{}: acme: new certificate installed (valid until {}); next renewal at {}", name,
                 format_utc(lifetime->not_after), format_utc(job.schedule.state().next_attempt));
  } else {
    job.schedule.failed(now, random01);
    job.report.last_result = "error: " + error;
    ++job.report.attempts["error"];
    spdlog::error("{}: acme: {}; next attempt at {}{}", name, error,
                  format_utc(job.schedule.state().next_attempt),
                  job.schedule.has_valid(now) ? "; the current certificate keeps serving" : "");
  }
  plan(job);
  check_issued();
}

// The HTTP-01 listener: deploy-server on the bound http_listen socket (LISTEN_FDS), serving the
// webroot lego writes into and redirecting the rest to https://.
void AcmeManager::start_listener(Job& job) {
  if (stopped_ || job.retired || job.http.empty()) return;
  const std::string webroot = env_.acme_dir + "/webroot-" + job.spec.name;
  std::string error;
  make_private_dir(webroot, &error);
  chmod(webroot.c_str(), 0755);
  SpawnRequest request;
  request.argv = {env_.deploy_server, "--root", webroot, "--redirect-https",
                  std::to_string(https_port(job.spec))};
  request.env = inherited_environment();
  set_variable(request.env, "LISTEN_FDS", "1");
  request.inherit_fds = {job.http.front().fd};
  request.set_listen_pid = true;
  request.stderr_fd = STDERR_FILENO;
  SpawnResult result = spawn_process(request);
  const std::uint64_t run = ++job.listener_run;
  if (result.pid < 0) {
    spdlog::error("{}: acme: cannot start the HTTP-01 listener: {}", job.spec.name, result.message);
    return retry_listener(job, run);
  }
  job.listener = result.pid;
  spdlog::info("{}: acme: HTTP-01 listener on {} (pid {})", job.spec.name,
               job.acme().http_listen.text, result.pid);
  watch_listener(job, run);
}

// After an upgrade the listener is still this process's child: watched again. After a crash it
// is the dead supervisor's: a new one accepts on the same socket first, then it is told to stop
// (it finishes what it serves), so http:// is never refused.
void AcmeManager::take_listener(Job& job, const AcmeCarried* from) {
  if (from && from->listener > 0 && from->listener_is_child) {
    job.listener = from->listener;
    spdlog::info("{}: acme: HTTP-01 listener on {} (pid {}) taken over", job.spec.name,
                 job.acme().http_listen.text, job.listener);
    return watch_listener(job, ++job.listener_run);
  }
  start_listener(job);
  if (from && from->listener > 0) {
    spdlog::info("{}: acme: the crashed supervisor's HTTP-01 listener (pid {}) is replaced",
                 job.spec.name, from->listener);
    kill(from->listener, SIGTERM);
  }
}

void AcmeManager::watch_listener(Job& job, std::uint64_t run) {
  const auto started = std::chrono::steady_clock::now();
  children_.watch(
      job.listener,
      [this, &job, run, started](int) {
        job.listener = -1;
        if (std::chrono::steady_clock::now() - started > std::chrono::seconds(60)) {
          job.listener_failures = 0;
        }
        spdlog::warn("{}: acme: the HTTP-01 listener exited; restarting it", job.spec.name);
        retry_listener(job, run);
      },
      /*kill_group=*/true);
}

void AcmeManager::retry_listener(Job& job, std::uint64_t run) {
  if (stopped_ || job.listener_run != run) return;
  const int delay = std::min(1 << std::min(job.listener_failures, 5), kMaxListenerDelaySeconds);
  ++job.listener_failures;
  job.listener_timer.expires_after(std::chrono::seconds(delay));
  job.listener_timer.async_wait([this, &job](boost::system::error_code ec) {
    if (!ec) start_listener(job);
  });
}

}  // namespace deployctl
