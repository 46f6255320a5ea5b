// The ACME part of the upgrade's state document (acme_carry.h): what the old binary writes, the
// new one reads back, fds collected for the exec.
#include "acme_carry.h"

#include <doctest/doctest.h>

using namespace deployctl;

TEST_CASE("acme carry: the schedule, report, socket and listener survive the state document") {
  AcmeCarried web;
  web.http_fd = 9;
  web.listener = 4242;
  web.schedule = AcmeScheduleState{CertificateLifetime{1000, 91000}, 2, 5000, 6000};
  web.report.last_attempt = 5000;
  web.report.last_result = "error: lego failed";
  web.report.attempts = {{"ok", 1}, {"error", 2}};
  AcmeCarried api;  // nothing bound, no schedule yet
  std::vector<int> fds{3};
  const json::Value doc = acme_carried_json({{"web", web}, {"api", api}}, &fds);
  CHECK(fds == std::vector<int>{3, 9});

  auto parsed = json::parse(json::dump(doc));
  REQUIRE(parsed);
  const auto back = acme_carried_from_json(*parsed);
  REQUIRE(back.size() == 2);
  const AcmeCarried& w = back.at("web");
  CHECK(w.http_fd == 9);
  CHECK(w.listener == 4242);
  CHECK(w.listener_is_child);  // the same process after the exec
  REQUIRE(w.schedule);
  REQUIRE(w.schedule->certificate);
  CHECK(w.schedule->certificate->not_before == 1000);
  CHECK(w.schedule->certificate->not_after == 91000);
  CHECK(w.schedule->consecutive_failures == 2);
  CHECK(w.schedule->last_attempt == 5000);
  CHECK(w.schedule->next_attempt == 6000);
  CHECK(w.report.last_attempt == 5000);
  CHECK(w.report.last_result == "error: lego failed");
  CHECK(w.report.attempts == std::map<std::string, std::uint64_t>{{"error", 2}, {"ok", 1}});
  const AcmeCarried& a = back.at("api");
  CHECK(a.http_fd == -1);
  CHECK(a.listener == -1);
  CHECK_FALSE(a.schedule);
}

TEST_CASE("acme carry: a state without acme (an older binary's) carries nothing") {
  CHECK(acme_carried_from_json(json::Value()).empty());
  CHECK(acme_carried_from_json(json::Value::object()).empty());
}

TEST_CASE("acme carry: the names in the replica record and the fd keeper") {
  CHECK(acme_listener_id("web") == "acme-listener web");
  CHECK(acme_fd_name("web") == "acme web");
}
