#include "acme_carry.h"

namespace deployctl {

namespace {

json::Value schedule_json(const AcmeScheduleState& state) {
  json::Value out;
  if (state.certificate) {
    out["certificate"] = {{"not_before", state.certificate->not_before},
                          {"not_after", state.certificate->not_after}};
  } else {
    out["certificate"] = nullptr;
  }
  out["consecutive_failures"] = state.consecutive_failures;
  out["last_attempt"] = state.last_attempt;
  out["next_attempt"] = state.next_attempt;
  return out;
}

AcmeScheduleState schedule_from_json(const json::Value& in) {
  AcmeScheduleState state;
  if (const auto* cert = json::find(in, "certificate"); cert && cert->is_object()) {
    state.certificate = CertificateLifetime{json::as_int(json::get(*cert, "not_before")),
                                            json::as_int(json::get(*cert, "not_after"))};
  }
  state.consecutive_failures =
      static_cast<int>(json::as_int(json::get(in, "consecutive_failures")));
  state.last_attempt = json::as_int(json::get(in, "last_attempt"));
  state.next_attempt = json::as_int(json::get(in, "next_attempt"));
  return state;
}

json::Value report_json(const AcmeReport& report) {
  json::Value out;
  out["last_attempt"] = report.last_attempt;
  out["last_result"] = report.last_result;
  json::Value attempts = json::Value::object();
  for (const auto& [result, count] : report.attempts) attempts[result] = count;
  out["attempts"] = std::move(attempts);
  return out;
}

AcmeReport report_from_json(const json::Value& in) {
  AcmeReport report;
  report.last_attempt = json::as_int(json::get(in, "last_attempt"));
  report.last_result = json::as_string(json::get(in, "last_result"));
  for (const auto& [result, count] : json::as_object(json::get(in, "attempts"))) {
    report.attempts[result] = static_cast<std::uint64_t>(json::as_int(count));
  }
  return report;
}

}  // namespace

json::Value acme_carried_json(const std::map<std::string, AcmeCarried>& carried,
                              std::vector<int>* fds) {
  json::Value doc = json::Value::object();
  for (const auto& [service, job] : carried) {
    json::Value entry;
    entry["http_fd"] = job.http_fd;
    entry["listener"] = job.listener;
    entry["schedule"] = job.schedule ? schedule_json(*job.schedule) : json::Value();
    entry["report"] = report_json(job.report);
    if (job.http_fd >= 0) fds->push_back(job.http_fd);
    doc[service] = std::move(entry);
  }
  return doc;
}

std::map<std::string, AcmeCarried> acme_carried_from_json(const json::Value& doc) {
  std::map<std::string, AcmeCarried> carried;
  for (const auto& [service, entry] : json::as_object(doc)) {
    AcmeCarried& job = carried[service];
    job.http_fd = static_cast<int>(json::as_int(json::get(entry, "http_fd"), -1));
    job.listener = static_cast<pid_t>(json::as_int(json::get(entry, "listener"), -1));
    job.listener_is_child = true;
    if (const auto* schedule = json::find(entry, "schedule"); schedule && schedule->is_object()) {
      job.schedule = schedule_from_json(*schedule);
    }
    job.report = report_from_json(json::get(entry, "report"));
  }
  return carried;
}

std::string acme_listener_id(const std::string& service) { return "acme-listener " + service; }

std::string acme_fd_name(const std::string& service) { return "acme " + service; }

}  // namespace deployctl
