// Supervisor's ACME edge (acme_manager.h): starts the manager, holds the deployment's start
// until every acme service has a certificate, logs lego's output as `acme | ...`, serves
// `deployctl renew` and what `status` and the metrics show of it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>

#include "acme_manager.h"
#include "certificate.h"
#include "commands.h"
#include "load.h"
#include "log_writer.h"
#include "read_file.h"
#include "supervisor_state.h"
#include "tls_files.h"
#include "upgrade.h"

namespace deployctl {

namespace {

// deploy-server next to this deployctl (build/bin, /usr/bin), else searched on PATH.
std::string deploy_server_path() {
  const std::filesystem::path self = current_executable();
  const std::filesystem::path sibling = self.parent_path() / "deploy-server";
  if (!self.empty() && access(sibling.c_str(), X_OK) == 0) return sibling.string();
  return "deploy-server";
}

}  // namespace

bool Supervisor::start_acme(std::string* error, std::map<std::string, AcmeCarried> carried) {
  AcmeEnvironment environment{tls_files_->acme_dir(), deploy_server_path()};
  environment.on_line = [this](const std::string& service, const std::string& line,
                               bool is_stderr) {
    bool to_terminal = terminal_echo();
    if (logs_) {
      logs_->replica_lines({spec_.name, service, "acme", 0}, is_stderr, {line});
      to_terminal = logs_->echo_to_terminal();
    }
    if (to_terminal) std::fprintf(is_stderr ? stderr : stdout, "acme | %s\n", line.c_str());
  };
  acme_ = std::make_unique<AcmeManager>(io_, children_, std::move(environment));
  return acme_->start(spec_, error, std::move(carried));
}

// Every acme service has a certificate (error empty): the replicas start. Otherwise the start
// fails with the ACME error; nothing was started.
void Supervisor::acme_issued(const std::string& error) {
  if (error.empty()) {
    for (const auto& service : spec_.services) {
      if (service.tls && service.tls->acme) tls_files_served(service.name);
    }
    enqueue({Event{.kind = Event::Kind::start}});
    return;
  }
  spdlog::error("{}; no replica was started", error);
  acme_failed_ = true;
  if (on_started_) std::exchange(on_started_, nullptr)(false, error + "; no replica was started");
  enqueue({Event{.kind = Event::Kind::interrupt, .message = "the ACME failure"}});
}

void Supervisor::handle_renew(const json::Value& request, ManagementServer::Reply reply) {
  if (!acme_) {  // upgraded in place from a binary that did not carry ACME (docs/upgrade.md)
    return reply(management_error(
        "this supervisor was upgraded in place from a binary that did not carry ACME; restart "
        "the deployment (down, up) to renew",
        kExitFailed));
  }
  std::vector<std::string> services;
  if (const auto* list = json::find(request, "services"); list && list->is_array()) {
    for (const auto& item : json::as_array(*list)) services.push_back(json::as_string(item));
  }
  if (services.empty()) {
    for (const auto& service : spec_.services) {
      if (service.tls && service.tls->acme) services.push_back(service.name);
    }
    if (services.empty()) {
      return reply(management_error("no service of " + spec_.name + " has tls.acme", kExitUsage));
    }
  }
  for (const auto& name : services) {
    if (acme_->reload_staged(name)) {
      return reply(management_error("a reload is changing the acme settings of '" + name +
                                        "'; renew again once it has ended",
                                    kExitBusy));
    }
  }
  for (const auto& name : services) {
    std::string error;
    if (!acme_->force(name, &error)) return reply(management_error(error, kExitUsage));
  }
  json::Value ok;
  ok["ok"] = true;
  ok["services"] = services;
  reply(ok);
}

// The acme part of `status`'s tls object: the last attempt, its result and the next one.
void Supervisor::acme_json(const std::string& service, json::Value& tls) const {
  auto report = acme_ ? acme_->report(service) : std::nullopt;
  if (!report) return;
  json::Value last;
  if (report->last_attempt) last["at"] = format_utc(report->last_attempt);
  if (report->running) {
    last["result"] = "running";
  } else if (!report->last_result.empty()) {
    last["result"] = report->last_result;
  }
  tls["last_renewal"] = std::move(last);
  tls["next_renewal"] = format_utc(report->next_attempt);
  tls["renewal_failures"] = report->consecutive_failures;
}

// The expiry of the certificate on disk (file or acme) and the ACME attempts, for the metrics.
void Supervisor::certificate_metrics(const std::string& service, ServiceMetrics& metrics) const {
  auto found = services_.find(service);
  if (found == services_.end()) return;
  const auto paths = tls_paths(*found->second->spec, tls_files_->acme_dir());
  if (!paths) return;
  FileRead pem = read_file(paths->cert, 1 << 20);
  if (pem.ok()) {
    auto facts = inspect_certificate(pem.text);
    if (auto* known = std::get_if<CertificateFacts>(&facts)) {
      metrics.certificate_expiry = static_cast<double>(known->not_after);
    }
  }
  if (auto report = acme_ ? acme_->report(service) : std::nullopt) {
    metrics.acme_renewals = report->attempts;
  }
}

}  // namespace deployctl
