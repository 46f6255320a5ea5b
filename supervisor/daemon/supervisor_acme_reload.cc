// A reload's ACME step (docs/spec.md, "acme"): between the reload's pre-start steps and its
// application, the acme services it adds or changes get their HTTP-01 listener and, where
// needed, their certificate (AcmeManager::prepare_reload). If one cannot be obtained the reload
// is refused and what runs is untouched; otherwise the reload goes on and, once the core
// applies it, the staged ACME jobs replace the old ones (adopt_reload: commit_reload).
#include <spdlog/spdlog.h>

#include "acme_manager.h"
#include "asio.h"
#include "commands.h"
#include "supervisor_state.h"

namespace deployctl {

namespace asio = boost::asio;

namespace {

// Whether `next` adds an acme service or changes the acme settings of one.
bool acme_changes(const Spec& running, const Spec& next) {
  for (const auto& service : next.services) {
    if (!service.tls || !service.tls->acme) continue;
    const ServiceSpec* old = running.find_service(service.name);
    if (!old || !old->tls || old->tls->acme != service.tls->acme) return true;
  }
  return false;
}

}  // namespace

void Supervisor::reload_acme(std::uint64_t request) {
  const Spec& next = reloads_.at(request)->next;
  if (!acme_) {  // resumed after an upgrade in place: ACME is not taken over (docs/spec.md)
    if (!acme_changes(spec_, next)) return queue_reload(request);
    return reply(reply_action(request, ReplyCode::failed,
                              "reload refused: this supervisor was upgraded in place and does "
                              "not run ACME; restart the deployment (down, up) to change acme "
                              "settings; nothing was changed"));
  }
  std::string error;
  const bool prepared = acme_->prepare_reload(
      next,
      [this, request](const std::string& problem) {
        asio::post(io_, [this, request, problem] { acme_reload_done(request, problem); });
      },
      &error);
  if (!prepared) {
    reply(reply_action(request, ReplyCode::failed,
                       "reload refused: " + error + "; nothing was changed"));
  }
}

void Supervisor::acme_reload_done(std::uint64_t request, const std::string& problem) {
  if (!reloads_.count(request)) return;  // answered meanwhile (the deployment stops)
  if (!problem.empty()) {
    acme_->cancel_reload();
    spdlog::error("reload refused: {}", problem);
    return reply(reply_action(request, ReplyCode::failed,
                              "reload refused: " + problem + "; nothing was changed"));
  }
  // The replicas the reload starts load what was just installed: no change left to roll.
  for (const auto& name : acme_->staged_services()) tls_files_served(name);
  queue_reload(request);
}

}  // namespace deployctl
