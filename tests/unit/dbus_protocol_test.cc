#include <doctest/doctest.h>

#include "commands.h"
#include "dbus_protocol.h"

using namespace deployctl;

TEST_CASE("dbus: deployment names become labels valid in bus names and object paths") {
  CHECK(dbus::escape_label("shop") == "shop");
  CHECK(dbus::escape_label("Shop2") == "Shop2");
  CHECK(dbus::escape_label("shop-eu.1") == "shop_2deu_2e1");
  CHECK(dbus::escape_label("my_app") == "my_5fapp");
  CHECK(dbus::escape_label("1st") == "_31st");  // a bus-name element cannot start with a digit
  CHECK(dbus::escape_label("") == "_");
  CHECK(dbus::bus_name("shop-eu") == "org.deployctl.Supervisor1.shop_2deu");
  CHECK(dbus::object_path("shop-eu") == "/org/deployctl/Supervisor1/shop_2deu");
}

TEST_CASE("dbus: distinct deployment names never share a label") {
  // '_' is escaped too, so "a_2d" and "a-" cannot collide.
  CHECK(dbus::escape_label("a_2d") != dbus::escape_label("a-"));
  CHECK(dbus::escape_label("a.b") != dbus::escape_label("a_b"));
}

TEST_CASE("dbus: error names map the CLI's exit codes") {
  CHECK(dbus::error_name(kExitFailed) == "org.deployctl.Supervisor1.Error.Failed");
  CHECK(dbus::error_name(kExitUsage) == "org.deployctl.Supervisor1.Error.InvalidArguments");
  CHECK(dbus::error_name(kExitNotRunning) == "org.deployctl.Supervisor1.Error.NotRunning");
  CHECK(dbus::error_name(kExitAlreadyRunning) == "org.deployctl.Supervisor1.Error.AlreadyRunning");
  CHECK(dbus::error_name(kExitPermission) == "org.deployctl.Supervisor1.Error.PermissionDenied");
  CHECK(dbus::error_name(42) == "org.deployctl.Supervisor1.Error.Failed");
}

TEST_CASE("dbus: calls become the requests the CLI sends") {
  CHECK(json::dump(dbus::status_request()) == R"({"command":"status"})");
  CHECK(json::dump(dbus::down_request()) == R"({"command":"down"})");
  CHECK(json::dump(dbus::scale_request({{"web", 4}, {"api", 0}})) ==
        R"({"command":"scale","counts":{"api":0,"web":4}})");
  CHECK(json::dump(dbus::scale_request({})) == R"({"command":"scale","counts":{}})");
  CHECK(json::dump(dbus::restart_request({"web"})) == R"({"command":"restart","services":["web"]})");
  CHECK(json::dump(dbus::restart_request({})) == R"({"command":"restart","services":[]})");
  CHECK(json::dump(dbus::reload_request("")) == R"({"command":"reload","file":""})");
  CHECK(json::dump(dbus::renew_request({"web"})) == R"({"command":"renew","services":["web"]})");
  CHECK(json::dump(dbus::renew_request({})) == R"({"command":"renew","services":[]})");
}

TEST_CASE("dbus: error responses become D-Bus errors with the same message") {
  json::Value ok;
  ok["ok"] = true;
  CHECK_FALSE(dbus::error_reply(ok));
  auto error = dbus::error_reply(management_error("no service 'x' in shop", kExitUsage));
  REQUIRE(error);
  CHECK(error->name == "org.deployctl.Supervisor1.Error.InvalidArguments");
  CHECK(error->message == "no service 'x' in shop");
  auto malformed = dbus::error_reply(json::Value());
  REQUIRE(malformed);
  CHECK(malformed->name == "org.deployctl.Supervisor1.Error.Failed");
}

TEST_CASE("dbus: a transition's reason names how the process ended, else the event") {
  using Kind = ReplicaEvent::Kind;
  ReplicaAction exit{ReplicaAction::Kind::record_exit};
  exit.reason = ExitReason::signal;
  exit.status.signal = 9;
  CHECK(dbus::transition_reason(ReplicaState::ready, {Kind::exited}, {exit}) ==
        "exited: signal 9 (SIGKILL)");
  exit.reason = ExitReason::health;
  CHECK(dbus::transition_reason(ReplicaState::unhealthy, {Kind::exited}, {exit}) ==
        "exited: signal 9 (SIGKILL) [health]");
  CHECK(dbus::transition_reason(ReplicaState::starting, {Kind::ready}, {}) == "ready");
  CHECK(dbus::transition_reason(ReplicaState::ready, {Kind::drain}, {}) == "drain");
  CHECK(dbus::transition_reason(ReplicaState::starting, {Kind::timer}, {}) ==
        "not ready within health.start_period");
  CHECK(dbus::transition_reason(ReplicaState::backoff, {Kind::timer}, {}) == "backoff elapsed");
}
