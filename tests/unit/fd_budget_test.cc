#include <doctest/doctest.h>

#include "fd_budget.h"

using namespace deployctl;

namespace {

Spec two_services() {
  Spec spec;
  spec.name = "shop";
  ServiceSpec web;
  web.name = "web";
  web.replicas = 40;
  web.listen.resize(2);
  ServiceSpec jobs;
  jobs.name = "jobs";
  jobs.replicas = 3;
  jobs.health.kind = HealthKind::exec;
  spec.services = {web, jobs};
  return spec;
}

}  // namespace

TEST_CASE("fd budget: fixed share, listen sockets, log files and each replica's share") {
  const Spec spec = two_services();
  const std::uint64_t expected = kFdsFixed + 1 + (2 + 1 + 40 * kFdsPerReplica) +
                                 (0 + 1 + 3 * (kFdsPerReplica + kFdsPerExecProbe));
  CHECK(fds_needed(spec) == expected);
}

TEST_CASE("fd budget: a scale's counts replace the spec's for the services it names") {
  const Spec spec = two_services();
  const std::uint64_t base = fds_needed(spec);
  CHECK(fds_needed(spec, {{"web", 1000}}) == base + 960 * kFdsPerReplica);
  CHECK(fds_needed(spec, {{"web", 0}, {"jobs", 0}}) ==
        kFdsFixed + 1 + 2 + 1 + 1);
  CHECK(fds_needed(spec, {{"nosuch", 5}}) == base);
}

TEST_CASE("fd budget: the error names what was asked, both numbers and the remedy") {
  CHECK_FALSE(fd_limit_error("the spec", 100, 100));
  auto error = fd_limit_error("web=1000", 5130, 1024);
  REQUIRE(error);
  CHECK(*error == "web=1000 needs about 5130 file descriptors, but the supervisor's limit "
                  "(RLIMIT_NOFILE) is 1024: raise the limit (ulimit -n as root, LimitNOFILE= "
                  "in the systemd unit) or run fewer replicas");
}

TEST_CASE("fd budget: the issue's cases: 40 replicas do not fit 64, 1000 do not fit 1024") {
  Spec spec;
  spec.services.resize(1);
  spec.services[0].name = "web";
  spec.services[0].replicas = 40;
  CHECK(fd_limit_error("the spec", fds_needed(spec), 64));
  spec.services[0].replicas = 1000;
  CHECK(fd_limit_error("the spec", fds_needed(spec), 1024));
  CHECK_FALSE(fd_limit_error("the spec", fds_needed(spec), 524288));
}

TEST_CASE("fd budget: per-replica sockets are one listen socket per replica") {
  Spec spec = two_services();
  spec.services[0].listen.resize(1);
  spec.services[0].sockets = SocketMode::per_replica;
  const std::uint64_t expected = kFdsFixed + 1 + (40 + 1 + 40 * kFdsPerReplica) +
                                 (0 + 1 + 3 * (kFdsPerReplica + kFdsPerExecProbe));
  CHECK(fds_needed(spec) == expected);
  CHECK(listen_fds(1, true, 7) == 7);
  CHECK(listen_fds(2, false, 7) == 2);
}
