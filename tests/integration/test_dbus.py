"""The D-Bus API (org.deployctl.Supervisor1, docs/dbus.md), driven by real clients (busctl,
gdbus) on a private dbus-daemon: a system-bus-like configuration (deny by default, as Debian's
system.conf) that includes OUR policy file. The supervisor runs as root here, so it uses the
system bus, found through DBUS_SYSTEM_BUS_ADDRESS."""
import grp
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from acme_pebble import acme_spec, needs_pebble, pebble_for, renewed  # noqa: F401 (a fixture)
from harness import (all_replicas, assert_gone, free_port, is_alive, service_by_name, source_dir,
                     wait_until)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs busctl as another user and owns system-bus names")

INTERFACE = "org.deployctl.Supervisor1"
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
# The policy's `deployctl` group does not exist here: a copy of the policy names this group
# instead, which `nobody` can be given as a supplementary group.
STAND_IN_GROUP = next((g.gr_name for g in grp.getgrall() if g.gr_name in ("daemon", "sys", "adm")),
                      None)

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy}</include>
  <include>{group_policy}</include>
</busconfig>
"""

TWO_SERVERS = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "5s"
"""


class PrivateBus:
    """A dbus-daemon of our own, listening in a temp dir that `nobody` can reach."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="dctl-bus-"))
        self.dir.chmod(0o755)
        policy = source_dir() / "systemd" / "org.deployctl.Supervisor1.conf"
        group_policy = self.dir / "group-policy.conf"
        group_policy.write_text(policy.read_text().replace('group="deployctl"',
                                                           f'group="{STAND_IN_GROUP}"'))
        config = self.dir / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.dir / "bus.sock", policy=policy,
                                            group_policy=group_policy))
        self.stderr = open(self.dir / "daemon.stderr", "wb")
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--print-address", f"--config-file={config}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.close()
            raise AssertionError("dbus-daemon printed no address within 10s: " +
                                 (self.dir / "daemon.stderr").read_text(errors="replace"))
        self.address = line

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def names(self) -> str:
        return busctl(self, "list", "--acquired").stdout


@pytest.fixture(scope="module")
def bus():
    if STAND_IN_GROUP is None:
        pytest.fail("no group daemon, sys or adm to stand in for `deployctl`", pytrace=False)
    private = PrivateBus()
    yield private
    private.close()


def busctl(bus, *args, user=(), timeout=40) -> subprocess.CompletedProcess:
    return subprocess.run([*user, "busctl", f"--address={bus.address}", *args],
                          capture_output=True, text=True, timeout=timeout)


def escaped(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalpha() or (c.isdigit() and i)) else f"_{ord(c):02x}"
                   for i, c in enumerate(name))


class Api:
    """The D-Bus object of one deployment, called through busctl."""

    def __init__(self, bus: PrivateBus, deployment: str):
        self.bus = bus
        self.name = f"{INTERFACE}.{escaped(deployment)}"
        self.path = f"/org/deployctl/Supervisor1/{escaped(deployment)}"

    def call(self, method: str, *signature_and_args: str, user=()) -> subprocess.CompletedProcess:
        return busctl(self.bus, "--json=short", "call", self.name, self.path, INTERFACE, method,
                      *signature_and_args, user=user)

    def ok(self, method: str, *signature_and_args: str):
        result = self.call(method, *signature_and_args)
        assert result.returncode == 0, f"{method}: {result.stderr}"
        return json.loads(result.stdout)["data"] if result.stdout.strip() else None

    def get(self, prop: str, user=()):
        result = busctl(self.bus, "--json=short", "get-property", self.name, self.path,
                        INTERFACE, prop, user=user)
        assert result.returncode == 0, f"{prop}: {result.stderr}"
        return json.loads(result.stdout)["data"]

    def status(self) -> dict:
        return json.loads(self.ok("Status")[0])

    def error_of(self, method: str, gvariant_args: list[str]) -> str:
        """The error line gdbus prints for a call that must fail ("GDBus.Error:NAME: text")."""
        result = subprocess.run(
            ["gdbus", "call", "--address", self.bus.address, "--dest", self.name,
             "--object-path", self.path, "--method", f"{INTERFACE}.{method}", *gvariant_args],
            capture_output=True, text=True, timeout=40)
        assert result.returncode != 0, f"{method} succeeded: {result.stdout}"
        return result.stderr.strip()


class Monitor:
    """`busctl monitor` of one object path, one JSON message a line, in a file."""

    def __init__(self, bus: PrivateBus, path: str, directory: Path):
        self.out = directory / "monitor.out"
        self.err = directory / "monitor.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                ["busctl", f"--address={bus.address}", "monitor", "--json=short",
                 f"--match=path={path}"], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        wait_until(lambda: "Monitoring bus message stream" in self.err.read_text(), 10,
                   "busctl monitor to become a monitor")

    def signals(self, member: str) -> list:
        messages = [json.loads(line) for line in self.out.read_text().splitlines()
                    if line.strip().endswith("}")]
        return [m["payload"]["data"] for m in messages
                if m.get("type") == "signal" and m.get("member") == member]

    def close(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def on_bus(dep, bus):
    """Points the deployment's supervisor at the private bus (whichever bus it picks)."""
    dep.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    dep.env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
    return Api(bus, dep.name)


def without_volatile(value):
    """Status without what changes between two looks (uptimes, memory, ages)."""
    volatile = {"uptime_ms", "rss_bytes", "ago_ms"}
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def ready_pids(status: dict) -> dict:
    return {r["id"]: r["pid"] for r in all_replicas(status) if r["state"] == "ready"}


# --- tests ----------------------------------------------------------------------------------

def test_status_is_the_status_json_of_the_cli_and_properties_read_back(deployment, bus):
    dep = deployment(TWO_SERVERS, name="shop-eu")
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    assert api.name == "org.deployctl.Supervisor1.shop_2deu"
    over_dbus, over_cli = api.status(), dep.status()
    assert without_volatile(over_dbus) == without_volatile(over_cli)
    assert len(ready_pids(over_dbus)) == 2
    assert api.get("Name") == "shop-eu"
    assert api.get("State") == "running"
    assert (api.get("DesiredReplicas"), api.get("ReadyReplicas")) == (2, 2)
    assert api.get("DesiredByService") == {"web": 2}
    assert api.get("ReadyByService") == {"web": 2}
    assert "D-Bus API on the system bus as org.deployctl.Supervisor1.shop_2deu" in dep.log_text()


def test_two_deployments_share_the_bus_under_their_own_names(deployment, bus):
    first, second = deployment(TWO_SERVERS, name="app-1"), deployment(TWO_SERVERS, name="app_1")
    apis = [on_bus(first, bus), on_bus(second, bus)]
    assert first.up().returncode == 0 and second.up().returncode == 0
    names = bus.names()
    for dep, api in zip((first, second), apis):
        assert api.name in names
        assert api.status()["name"] == dep.name
        assert api.status()["pid"] == dep.status()["pid"]


def test_scale_changes_real_replica_counts_and_answers_once_reached(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    before = dep.replica_pids()

    api.ok("Scale", "a{su}", "1", "web", "4")
    status = dep.status()  # no waiting: Scale answers once the count is reached
    assert service_by_name(status, "web")["ready"] == 4
    four = ready_pids(status)
    assert len(four) == 4 and all(is_alive(pid) for pid in four.values())
    assert {k: four[k] for k in before} == before, "scale-up must not touch running replicas"
    assert (api.get("DesiredReplicas"), api.get("ReadyReplicas")) == (4, 4)
    assert api.get("ReadyByService") == {"web": 4}

    api.ok("Scale", "a{su}", "1", "web", "1")
    status = dep.status()
    assert ready_pids(status) == {"web.0": before["web.0"]}
    assert_gone([pid for rid, pid in four.items() if rid != "web.0"])
    assert (api.get("DesiredReplicas"), api.get("ReadyReplicas")) == (1, 1)


def test_errors_keep_the_message_and_name_the_exit_code(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    error = api.error_of("Scale", ["{'nope': 4}"])
    assert "org.deployctl.Supervisor1.Error.InvalidArguments: no service 'nope' in itest" in error
    error = api.error_of("Reload", [str(dep.dir / "missing.toml")])
    assert "org.deployctl.Supervisor1.Error.InvalidArguments:" in error
    assert "missing.toml" in error
    too_many = api.call("Scale", "a{su}", "1", "web", "1001")
    assert too_many.returncode != 0 and "must be 0..1000" in too_many.stderr
    assert dep.replica_pids().keys() == {"web.0", "web.1"}


@needs_pebble
def test_renew_requests_a_certificate_now_from_pebble(deployment, bus, pebble_for):
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port, replicas=1))
    api = on_bus(dep, bus)
    assert dep.up(timeout=120).returncode == 0
    dep.wait_for(renewed(dep, 1), timeout=10, what="the certificate issued at up")
    assert api.ok("Renew", "as", "0") == [["web"]]  # none named: every acme service
    status = dep.wait_for(renewed(dep, 2), timeout=60, what="the renewal D-Bus asked for")
    assert status["services"][0]["tls"]["last_renewal"]["result"].startswith("ok: ")
    assert api.ok("Renew", "as", "1", "web") == [["web"]]
    dep.wait_for(renewed(dep, 3), timeout=60, what="the renewal of the named service")
    error = api.error_of("Renew", ["['nope']"])
    assert "org.deployctl.Supervisor1.Error.InvalidArguments: service 'nope' has no" in error


def test_renew_without_acme_services_is_invalid_arguments(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    error = api.error_of("Renew", ["@as []"])
    assert "org.deployctl.Supervisor1.Error.InvalidArguments: no service of itest has tls.acme" \
        in error, error


def test_restart_replaces_every_replica(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    api.ok("Restart", "as", "0")
    after = ready_pids(dep.status())
    assert len(after) == 2
    assert not set(after.values()) & set(before.values()), (before, after)
    assert_gone(list(before.values()))


def test_reload_applies_the_edited_spec(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    dep.write_spec(TWO_SERVERS.replace("replicas = 2", "replicas = 3"))
    api.ok("Reload", "s", "")  # "": the file the deployment was started from
    status = dep.status()
    assert len(ready_pids(status)) == 3
    assert api.get("DesiredReplicas") == 3


def test_down_stops_everything_and_leaves_the_bus(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    pids = [dep.supervisor_pid, *dep.replica_pids().values()]
    dep.track_descendants()
    api.ok("Down")
    assert_gone(pids, timeout=10)
    wait_until(lambda: api.name not in bus.names(), 5, f"{api.name} to leave the bus")


def test_killed_replica_is_announced_by_signal_and_properties_changed(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    victim = dep.replica_pids()["web.1"]
    monitor = Monitor(bus, api.path, dep.dir)
    try:
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: ["web.1", "ready", "starting", "exited: signal 9 (SIGKILL)"]
                   in monitor.signals("ReplicaStateChanged"), 10,
                   "ReplicaStateChanged for the killed web.1")
        wait_until(lambda: ["web.1", "starting", "ready", "ready"]
                   in monitor.signals("ReplicaStateChanged"), 10, "web.1 ready again")

        def ready_counts():
            changes = monitor.signals("PropertiesChanged")
            return [c[1]["ReadyReplicas"]["data"] for c in changes if "ReadyReplicas" in c[1]]
        wait_until(lambda: ready_counts()[-2:] == [1, 2], 10,
                   "PropertiesChanged: ReadyReplicas 1, then 2")
        assert all(c[0] == INTERFACE for c in monitor.signals("PropertiesChanged"))
    finally:
        monitor.close()
    assert api.get("ReadyReplicas") == 2


def test_events_other_than_state_changes_are_event_signals(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    victim = dep.replica_pids()["web.1"]
    monitor = Monitor(bus, api.path, dep.dir)

    def events(kind: str) -> list:
        """(kind, service, replica, message, lines) of the Event signals of `kind`."""
        return [e[2:] for e in monitor.signals("Event") if e[2] == kind]
    try:
        os.kill(victim, signal.SIGKILL)
        exit_event = ["exit", "web", "web.1", "signal 9 (SIGKILL), reason signal"]
        wait_until(lambda: [e[:4] for e in events("exit")] == [exit_event], 10,
                   "an Event signal for the kill of web.1")
        wait_until(lambda: ["web.1", "starting", "ready", "ready"]
                   in monitor.signals("ReplicaStateChanged"), 10, "web.1 ready again")
        assert dep.scale(web=3).returncode == 0
        wait_until(lambda: ["scale", "web", "", "desired replicas 2 -> 3", []] in events("scale"),
                   10, "an Event signal for the scale")
        # State changes stay ReplicaStateChanged only; seq and time come from the event stream.
        assert events("state") == []
        listed = dep.deployctl("events", "--json", str(dep.spec_path)).stdout.splitlines()
        history = {e["seq"]: e for e in map(json.loads, listed)}
        for seq, time_ms, kind, service, replica, message, lines in monitor.signals("Event"):
            assert history[seq]["kind"] == kind and history[seq]["message"] == message
            assert history[seq]["time_ms"] == time_ms
    finally:
        monitor.close()


def test_policy_lets_anyone_read_but_only_root_and_the_group_change(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up().returncode == 0
    status = api.call("Status", user=AS_NOBODY)
    assert status.returncode == 0, status.stderr
    assert json.loads(json.loads(status.stdout)["data"][0])["name"] == "itest"
    assert api.get("ReadyReplicas", user=AS_NOBODY) == 2
    for method, args in (("Scale", ("a{su}", "1", "web", "3")), ("Down", ()),
                         ("Restart", ("as", "0")), ("Reload", ("s", "")),
                         ("Renew", ("as", "0"))):
        denied = api.call(method, *args, user=AS_NOBODY)
        assert denied.returncode != 0 and "Access denied" in denied.stderr, (method, denied)
    assert dep.status()["services"][0]["desired"] == 2, "a denied call changed the deployment"

    in_group = ("setpriv", "--reuid=65534", "--regid=65534", f"--groups={STAND_IN_GROUP}")
    scaled = api.call("Scale", "a{su}", "1", "web", "3", user=in_group)
    assert scaled.returncode == 0, scaled.stderr
    assert service_by_name(dep.status(), "web")["ready"] == 3


def test_up_no_dbus_stays_off_the_bus(deployment, bus):
    dep = deployment(TWO_SERVERS)
    api = on_bus(dep, bus)
    assert dep.up("--no-dbus").returncode == 0
    assert api.name not in bus.names()
    assert "D-Bus" not in dep.log_text()
    assert dep.scale(web=3).returncode == 0


def test_unreachable_bus_is_one_log_line_not_a_failure(deployment):
    dep = deployment(TWO_SERVERS)
    nowhere = f"unix:path={dep.dir}/no-bus-here.sock"
    dep.env["DBUS_SYSTEM_BUS_ADDRESS"] = nowhere
    dep.env["DBUS_SESSION_BUS_ADDRESS"] = nowhere
    assert dep.up().returncode == 0
    lines = [line for line in dep.log_text().splitlines() if "D-Bus" in line]
    assert len(lines) == 1 and "D-Bus API off: system bus:" in lines[0], lines
    assert dep.scale(web=3).returncode == 0
