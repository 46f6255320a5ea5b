// Supervisor's TLS edge for [services.NAME.tls]: the files its replicas load, watching them for
// replacement (a new pair that loads rolls the service: Event::cert_changed), and what
// `status` shows of them. The decisions are the core's; this file only looks at files.
#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>

#include "certificate.h"
#include "load.h"
#include "read_file.h"
#include "supervisor_state.h"
#include "tls_check.h"
#include "tls_files.h"
#include "tls_watch.h"

namespace deployctl {

namespace {

// How long the files must stay quiet before they are checked (a cert and a key renamed into
// place one after the other are one change).
constexpr Duration kTlsSettle{300};
constexpr std::size_t kMaxPemBytes = 1 << 20;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What is wrong with the service's cert/key files (tls_check.h's errors, joined), or "".
std::string tls_errors(const ServiceSpec& spec) {
  Spec one;
  one.services = {spec};
  std::string errors;
  for (const auto& report : check_tls_files(one, unix_now())) {
    for (const auto& problem : report.problems) {
      if (problem.error) errors += (errors.empty() ? "" : "; ") + problem.to_string();
    }
  }
  return errors;
}

// Identifies the bytes of the files now on disk (a touch without new content is no change).
std::size_t fingerprint(const TlsPaths& paths) {
  const std::string bytes =
      read_file(paths.cert, kMaxPemBytes).text + '\0' + read_file(paths.key, kMaxPemBytes).text;
  return std::hash<std::string>{}(bytes);
}

}  // namespace

PlaceholderValues Supervisor::placeholders(const ServiceSpec& spec, int index) const {
  PlaceholderValues values{index, replica_port(spec, index), std::nullopt, std::nullopt};
  if (auto paths = tls_paths(spec, tls_files_->acme_dir())) {
    values.tls_cert = paths->cert;
    values.tls_key = paths->key;
  }
  return values;
}

// A replica of another user cannot open the files (tls_files.h): it gets them as memfds, and
// {tls_cert} / {tls_key} (hence DEPLOYCTL_TLS_CERT / KEY) name those instead.
void Supervisor::replica_tls_fds(const ServiceSpec& spec,
                                 const std::optional<SpawnRequest::Credentials>& credentials,
                                 int first_fd, PlaceholderValues& values, ReplicaTlsFds& fds,
                                 std::string* error) {
  std::optional<uid_t> owner;
  if (credentials) owner = credentials->uid;
  const int ticket = tls_files_->ticket_key_fd(spec.name, owner, error);
  if (ticket < 0) return;
  fds.inherit.push_back(ticket);
  fds.ticket_path = "/proc/self/fd/" + std::to_string(first_fd);
  if (!credentials || !values.tls_cert || !values.tls_key) return;
  for (std::optional<std::string>* file : {&values.tls_cert, &values.tls_key}) {
    const int fd = sealed_pem_fd(**file, credentials->uid, credentials->gid, error);
    if (fd < 0) return;
    fds.owned.push_back(fd);
    fds.inherit.push_back(fd);
    *file = "/proc/self/fd/" + std::to_string(first_fd + fds.inherit.size() - 1);
  }
}

void Supervisor::start_tls() {
  tls_watch_ = std::make_unique<TlsWatch>(
      io_, kTlsSettle, [this](const std::string& service) { tls_files_changed(service); });
  watch_tls();
}

// (Re)computes the watched files from the services' specs: at start and after a reload.
void Supervisor::watch_tls() {
  std::map<std::string, std::vector<std::string>> files;
  for (const auto& [name, service] : services_) {
    auto paths = tls_paths(*service->spec, tls_files_->acme_dir());
    if (!paths) continue;
    files[name] = {paths->cert, paths->key};
    TlsRecord& record = tls_records_[name];
    if (record.cert != paths->cert || record.key != paths->key) {  // new, or changed by reload
      record = TlsRecord{paths->cert, paths->key, fingerprint(*paths)};
    }
  }
  std::erase_if(tls_records_, [&](const auto& entry) { return !files.count(entry.first); });
  std::string error;
  if (!tls_watch_->watch(files, &error)) {
    spdlog::warn("{}; certificates replaced on disk are not noticed (use `deployctl restart`)",
                 error);
  }
}

// The files of `name` were replaced: a pair that loads and differs rolls the service; a bad
// one is reported and the replicas keep serving what they loaded.
void Supervisor::tls_files_changed(const std::string& name) {
  auto service = services_.find(name);
  auto record = tls_records_.find(name);
  if (service == services_.end() || record == tls_records_.end()) return;
  TlsRecord& seen = record->second;
  const std::size_t now_on_disk = fingerprint({seen.cert, seen.key});
  if (now_on_disk == seen.fingerprint && seen.result.rfind("error", 0) != 0) return;
  seen.checked_at = unix_now();
  if (const std::string errors = tls_errors(*service->second->spec); !errors.empty()) {
    seen.result = "error: " + errors;
    spdlog::error(
        "{}: the new certificate was not rolled out, the replicas keep serving the "
        "one they loaded: {}",
        name, errors);
    return;
  }
  if (now_on_disk == seen.fingerprint) {  // fixed back to what is served
    seen.result = "ok: unchanged";
    return;
  }
  seen.fingerprint = now_on_disk;
  seen.result = "ok: rolled out";
  spdlog::info("{}: new certificate in {}", name, seen.cert);
  enqueue({Event{.kind = Event::Kind::cert_changed, .services = {name}}});
}

// The replicas about to start load the files now on disk (the first ACME certificate was
// installed before they start): their replacement is no change to roll.
void Supervisor::tls_files_served(const std::string& name) {
  auto record = tls_records_.find(name);
  if (record != tls_records_.end()) {
    record->second.fingerprint = fingerprint({record->second.cert, record->second.key});
  }
}

// Why `next` may not be reloaded as far as TLS goes ("" if it may): the files of every
// service that will start replicas from changed settings must load.
std::string Supervisor::tls_reload_problem(const Spec& next) const {
  for (const auto& service : next.services) {
    const ServiceSpec* old = spec_.find_service(service.name);
    if (old && *old == service) continue;
    if (const std::string errors = tls_errors(service); !errors.empty()) return errors;
  }
  return "";
}

json::Value Supervisor::tls_json(const std::string& name) const {
  auto service = services_.find(name);
  if (service == services_.end() || !service->second->spec->tls) return json::Value();
  const ServiceSpec& spec = *service->second->spec;
  const auto paths = tls_paths(spec, tls_files_->acme_dir());
  json::Value tls;
  tls["source"] = spec.tls->acme ? "acme" : "file";
  tls["cert"] = paths->cert;
  FileRead pem = read_file(paths->cert, kMaxPemBytes);
  auto facts = pem.ok() ? inspect_certificate(pem.text)
                        : std::variant<CertificateFacts, std::string>(pem.error);
  if (const auto* known = std::get_if<CertificateFacts>(&facts)) {
    tls["subject"] = known->subject;
    tls["issuer"] = known->issuer;
    tls["not_after"] = format_utc(known->not_after);
    const std::int64_t left = known->not_after - unix_now();
    tls["days_left"] = left < 0 ? -((-left + 86399) / 86400) : left / 86400;
  } else {
    tls["error"] = std::get<std::string>(facts);
  }
  json::Value last;
  if (auto record = tls_records_.find(name);
      record != tls_records_.end() && record->second.checked_at) {
    last["at"] = format_utc(record->second.checked_at);
    last["result"] = record->second.result;
  }
  tls["last_renewal"] = std::move(last);
  acme_json(name, tls);  // acme: the last lego run instead
  return tls;
}

}  // namespace deployctl
