"""The installed .deb under a real systemd (issue 14): systemd runs as PID 1 of a private
namespace (systemd_ns.py, ONE per module), the package is installed with `dpkg -i` from inside
it (the namespace shares this machine's file system except /run, /tmp and /var/tmp, so this
installs on the machine: deb_package.package_slot checks first that nothing of deployctl is
here and purges at the end), and `deployctl@example` runs /etc/deployctl/example.toml.

In file order (one deployment, each test starts from where the previous one left it):
start (READY=1 only once every replica is ready, STATUS= text), reload (2 -> 4 replicas),
journal fields (supervisor lines: PRIORITY, no timestamp of ours; replica lines: their fields),
the D-Bus API on the namespace's system bus with the installed policy, `dpkg -i` of a newer
package under a client loop (postinst upgrades the running instance in place), and the watchdog
(a SIGSTOPped supervisor is killed and restarted by systemd).

The newer package is built by packaging/build-deb.sh with VERSION=<this one's>+1 in a sibling
build tree (same build type, same compiler launcher: with ccache, only the version's own file
is compiled), removed at the end. Needs root, unshare/nsenter, systemd and dbus.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deb_package import cpack_tree, describe, package_slot, run
from harness import ClientLoop, deployctl_bin, free_port, source_dir, wait_until
from systemd_ns import SYSTEMD, SystemdNamespace
from test_upgrade import KeepAliveLoop

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="boots systemd in a namespace and installs "
                       "the .deb (dpkg -i): needs root"),
    pytest.mark.skipif(not os.path.exists(SYSTEMD) or not shutil.which("unshare")
                       or not shutil.which("nsenter"),
                       reason=f"needs {SYSTEMD}, unshare and nsenter"),
    pytest.mark.skipif(os.environ.get("DEPLOYCTL_SANITIZED") == "1",
                       reason="the sanitized tree's package is not the one that ships, and "
                       "building a newer one from it takes minutes; the regular run covers it"),
    pytest.mark.skipif(not shutil.which("dbus-daemon") or not shutil.which("busctl"),
                       reason="needs dbus-daemon and busctl (the D-Bus test and the unit's bus)"),
]

NAME = "example"
UNIT = f"deployctl@{NAME}.service"
SPEC_PATH = Path(f"/etc/deployctl/{NAME}.toml")  # the package's conffile, edited as a user would
BUS_NAME = f"org.deployctl.Supervisor1.{NAME}"
OBJECT = f"/org/deployctl/Supervisor1/{NAME}"
INTERFACE = "org.deployctl.Supervisor1"
# Each replica takes a second before it can be ready: a READY=1 sent before every replica is
# ready would let `systemctl start` return before that second is over.
SPEC = """name = "example"

[services.web]
command = ["/bin/sh", "-c", "sleep 1; exec deploy-server"]
replicas = {replicas}
listen = ["127.0.0.1:{port}"]
user = "nobody"

[services.web.health]
start_period = "20s"
"""
BUILD_TIMEOUT = 900  # the newer package's build: ~30 s with a warm ccache, minutes without
WATCHDOG = 3  # seconds, the watchdog test's WatchdogSec=
STAMP = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


@dataclass
class Packages:
    old: Path
    new: Path
    old_version: str
    new_version: str


def deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def cache_value(tree: Path, key: str) -> str:
    match = re.search(rf"^{key}:[A-Z]+=(.*)$", (tree / "CMakeCache.txt").read_text(), re.M)
    return match[1] if match else ""


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Packages:
    """The package of the build tree under test and a newer one built from the same sources
    with packaging/build-deb.sh (VERSION=<old>+1) in a sibling tree, at the same depth so
    that ccache (CCACHE_BASEDIR) finds every object but the version's."""
    tree = Path(deployctl_bin()).resolve().parent.parent
    out = tmp_path_factory.mktemp("debs")
    (out / "old").mkdir()
    old = cpack_tree(tree, out / "old")
    old_version = deb_version(old)
    new_version = f"{old_version}+1"
    sibling = tree.parent / f".{tree.name}-systemd-real-{os.getpid()}"
    env = {**os.environ, "VERSION": new_version, "JOBS": "2",
           "BUILD_TYPE": cache_value(tree, "CMAKE_BUILD_TYPE") or "Release"}
    launcher = cache_value(tree, "CMAKE_CXX_COMPILER_LAUNCHER")
    if launcher:
        env["CMAKE_CXX_COMPILER_LAUNCHER"] = launcher
    try:
        built = run([str(source_dir() / "packaging" / "build-deb.sh"), str(sibling),
                     str(out / "new")], timeout=BUILD_TIMEOUT, env=env)
        assert built.returncode == 0, describe(built)
        new = Path(built.stdout.strip().splitlines()[-1])
        assert deb_version(new) == new_version
        yield Packages(old, new, old_version, new_version)
    finally:
        shutil.rmtree(sibling, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


class System:
    """The namespace, the port, and the commands the tests run in it."""

    def __init__(self, ns: SystemdNamespace, port: int, debs: dict[str, str]):
        self.ns, self.port, self.debs = ns, port, debs

    def show(self, prop: str) -> str:
        return self.ns.systemctl("show", "-p", prop, "--value", UNIT).stdout.strip()

    def status(self) -> dict:
        result = self.ns.run(["deployctl", "status", "--json", "--name", NAME], check=False)
        assert result.returncode == 0, describe(result)
        return json.loads(result.stdout)

    def replica_pids(self) -> dict[str, int]:
        return {r["id"]: r["pid"] for s in self.status()["services"] for r in s["replicas"]}

    def all_ready(self, count: int) -> bool:
        web = self.status()["services"][0]
        return web["ready"] == count and len(web["replicas"]) == count and all(
            r["state"] == "ready" for r in web["replicas"])

    def write_spec(self, replicas: int) -> None:
        SPEC_PATH.write_text(SPEC.format(replicas=replicas, port=self.port))

    def journal(self, *args: str) -> list[dict]:
        result = self.ns.run(["journalctl", "--no-pager", "-o", "json", "-u", UNIT, *args])
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def busctl(self, *args: str, user: str = "") -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", user, "--"] if user else []
        return self.ns.run([*prefix, "busctl", "--system", "--json=short", *args], check=False)


@pytest.fixture(scope="module")
def system(packages) -> System:
    with package_slot("test_systemd_real.py"), SystemdNamespace(boot_timeout=60) as ns:
        debs = {}
        for key, deb in (("old", packages.old), ("new", packages.new)):
            shutil.copy(deb, ns.shared_dir)
            debs[key] = str(ns.shared_dir / deb.name)
        # The bus first: the supervisor joins it once, when it starts (After=dbus.socket).
        ns.systemctl("start", "dbus.socket", "dbus.service", timeout=60)
        installed = ns.run(["dpkg", "-i", debs["old"]], check=False, timeout=300)
        assert installed.returncode == 0, describe(installed)
        system = System(ns, free_port(), debs)
        system.write_spec(2)
        try:
            yield system
        finally:
            # prerm (remove) stops the running instance under systemd; then nothing is left.
            purged = ns.run(["dpkg", "-P", "deployctl"], check=False, timeout=300)
            assert purged.returncode == 0, describe(purged)
            assert ns.systemctl("is-active", UNIT, check=False).stdout.strip() != "active"


# --- start, reload -----------------------------------------------------------------------

def test_start_returns_once_every_replica_is_ready_with_the_status_text(system):
    started = time.monotonic()
    system.ns.systemctl("start", UNIT, timeout=60)
    elapsed = time.monotonic() - started
    # No waiting: `systemctl start` of a Type=notify unit returns at READY=1.
    assert system.show("ActiveState") == "active"
    assert system.show("StatusText") == "web 2/2 ready"
    assert system.all_ready(2), system.status()
    assert elapsed >= 1.0, f"start returned after {elapsed:.2f}s, before a replica could be ready"
    assert system.ns.main_pid(UNIT) > 0


def test_reload_applies_the_changed_spec(system):
    main = system.show("MainPID")
    before = system.replica_pids()
    system.write_spec(4)
    system.ns.systemctl("reload", UNIT, timeout=60)
    assert system.all_ready(4), system.status()
    assert system.show("StatusText") == "web 4/4 ready"
    assert system.show("MainPID") == main
    after = system.replica_pids()
    assert {k: after[k] for k in before} == before, "reload restarted replicas it kept"


# --- the journal -------------------------------------------------------------------------

def test_journal_priority_without_our_timestamp_and_replica_fields(system):
    victim = system.replica_pids()["web.1"]
    system.ns.run(["kill", "-9", str(victim)])
    wait_until(lambda: system.all_ready(4) and system.replica_pids()["web.1"] != victim, 20,
               "web.1 restarted after kill -9")

    def journal_with_the_exit():
        entries = system.journal()
        return entries if any(f"(pid {victim}) exited" in e.get("MESSAGE", "")
                              for e in entries) else None

    entries = wait_until(journal_with_the_exit, 10, "the exit of web.1 in the journal")
    own = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "deployctl"
           and e.get("_TRANSPORT") == "stdout"]
    assert own, entries[:5]
    for entry in own:
        message = entry["MESSAGE"]
        assert not STAMP.match(message), f"a timestamp of ours: {message!r}"
        assert not re.match(r"^\[?(info|warning|error|critical|debug)\]", message), message
        assert not message.startswith("<"), f"a priority prefix journald did not take: {message}"
    by_message = {e["MESSAGE"]: e["PRIORITY"] for e in own}
    ready = [m for m in by_message if re.fullmatch(r"web\.\d \(pid \d+\) ready after \d+ms", m)]
    assert ready and all(by_message[m] == "6" for m in ready), by_message
    exited = [m for m in by_message if m.startswith(f"web.1 (pid {victim}) exited")]
    assert exited and by_message[exited[0]] == "4", by_message  # a warning
    replica = [e for e in entries if e.get("DEPLOYCTL_REPLICA") and e["_TRANSPORT"] == "journal"]
    assert replica, "no replica line in the journal"
    line = replica[-1]
    assert line["DEPLOYCTL_DEPLOYMENT"] == NAME and line["DEPLOYCTL_SERVICE"] == "web"
    assert line["SYSLOG_IDENTIFIER"] == "web" and line["DEPLOYCTL_STREAM"] in ("stdout", "stderr")
    assert line["SYSLOG_PID"] == line["DEPLOYCTL_REPLICA_PID"]
    assert line["PRIORITY"] == ("5" if line["DEPLOYCTL_STREAM"] == "stderr" else "6")
    assert line["_SYSTEMD_UNIT"] == UNIT


# --- D-Bus -------------------------------------------------------------------------------

def test_dbus_api_on_the_system_bus_root_allowed_another_user_refused(system):
    status = system.busctl("call", BUS_NAME, OBJECT, INTERFACE, "Status")
    assert status.returncode == 0, describe(status)
    assert json.loads(json.loads(status.stdout)["data"][0])["name"] == NAME
    scaled = system.busctl("call", BUS_NAME, OBJECT, INTERFACE, "Scale", "a{su}", "1", "web", "4")
    assert scaled.returncode == 0, describe(scaled)
    # Reading is open to anyone (the policy), changing is not.
    read = system.busctl("call", BUS_NAME, OBJECT, INTERFACE, "Status", user="nobody")
    assert read.returncode == 0, describe(read)
    denied = system.busctl("call", BUS_NAME, OBJECT, INTERFACE, "Scale", "a{su}", "1", "web", "1",
                           user="nobody")
    assert denied.returncode != 0 and "Access denied" in denied.stderr, describe(denied)
    assert system.all_ready(4), "a refused call changed the deployment"


# --- dpkg -i of a newer package ----------------------------------------------------------

def start_by_hand(system: System, name: str, binary: str, extra: str = "") -> None:
    """A supervisor started by hand (`up -d`, as root: state in /run/deployctl/NAME)."""
    spec = system.ns.shared_dir / f"{name}.toml"
    spec.write_text(f'name = "{name}"\n[services.web]\ncommand = ["/usr/bin/deploy-server"]\n'
                    f'listen = ["127.0.0.1:{free_port()}"]\n{extra}')
    up = system.ns.run([binary, "up", "-d", "--no-dbus", str(spec)], check=False, timeout=60)
    assert up.returncode == 0, describe(up)


def version_of(system: System, name: str, cli: str = "deployctl") -> dict:
    result = system.ns.run([cli, "status", "--json", "--name", name])
    return json.loads(result.stdout)["supervisor"]


def test_dpkg_upgrade_moves_the_running_supervisor_in_place_under_load(system, packages):
    wait_until(lambda: system.all_ready(4), 20, "4 ready")
    # Also upgraded: one started by hand from the package's binary. Left alone: one running
    # another deployctl (the build tree's), though its state is in the same directory. Upgraded
    # with its memory limit carried: one with [memory]. Not upgradable (its spec file was edited
    # without a reload): reported, keeps the old binary, and the package upgrade still succeeds.
    start_by_hand(system, "byhand", "/usr/bin/deployctl")
    start_by_hand(system, "notours", deployctl_bin())
    start_by_hand(system, "limited", "/usr/bin/deployctl", '[services.web.memory]\nmax = "1GiB"\n')
    start_by_hand(system, "edited", "/usr/bin/deployctl")
    edited = system.ns.shared_dir / "edited.toml"
    edited.write_text(edited.read_text() + "replicas = 2\n")
    main = system.show("MainPID")
    before = system.status()
    pids = system.replica_pids()
    restarts = {r["id"]: r["restarts"] for r in before["services"][0]["replicas"]}
    uptimes = {r["id"]: r["uptime_ms"] for r in before["services"][0]["replicas"]}
    assert before["supervisor"]["version"] == packages.old_version
    with ClientLoop(system.port, max_requests=20_000, duration=120) as fresh, \
            KeepAliveLoop(system.port, max_requests=20_000, duration=120) as kept:
        fresh.wait_for_successes(20, 10)
        upgraded = system.ns.run(["dpkg", "-i", system.debs["new"]], check=False, timeout=300)
        count = fresh.successes
        wait_until(lambda: fresh.successes > count + 20, 10, "requests after the upgrade")
    assert upgraded.returncode == 0, describe(upgraded)
    assert f"{UNIT}: {NAME}: upgraded in place to deployctl {packages.new_version}" in \
        upgraded.stdout, describe(upgraded)
    assert not fresh.failures and not kept.failures, (fresh.summary(), kept.failures[:3])
    after = system.status()
    assert after["supervisor"]["version"] == packages.new_version  # the management socket's
    assert after["supervisor"]["upgrades"] == before["supervisor"]["upgrades"] + 1
    assert system.show("MainPID") == main and after["pid"] == before["pid"]
    assert system.replica_pids() == pids
    assert {r["id"]: r["restarts"] for r in after["services"][0]["replicas"]} == restarts
    for replica in after["services"][0]["replicas"]:  # uptimes continue, not restarted at 0
        assert replica["uptime_ms"] > uptimes[replica["id"]], (replica, uptimes)
    assert system.show("ActiveState") == "active"
    cli = system.ns.run(["deployctl", "--version"]).stdout.strip()
    assert cli == f"deployctl {packages.new_version}"
    assert "byhand: upgraded in place" in upgraded.stdout, describe(upgraded)
    assert version_of(system, "byhand")["version"] == packages.new_version
    assert "notours" not in upgraded.stdout + upgraded.stderr, describe(upgraded)
    other = version_of(system, "notours", deployctl_bin())
    assert other["upgrades"] == 0 and other["executable"] == deployctl_bin(), other
    assert "limited: upgraded in place" in upgraded.stdout, describe(upgraded)
    assert version_of(system, "limited")["version"] == packages.new_version
    assert re.search(r"supervisor \d+ \(/run/deployctl/edited\) was not upgraded in place and "
                     r"keeps running the previous binary \(exit 1\): .*changed since it was "
                     r"applied", upgraded.stderr), describe(upgraded)
    edited = version_of(system, "edited")
    assert edited["version"] == packages.old_version and edited["upgrade_failures"] == 1
    for name in ("byhand", "notours", "limited", "edited"):
        system.ns.run(["deployctl", "down", "--name", name], timeout=60)
    print(upgraded.stdout)
    print(f"dpkg -i upgrade: {fresh.successes} + {kept.successes} requests, 0 failed")


# --- the watchdog ------------------------------------------------------------------------

def test_watchdog_kills_and_restarts_a_stopped_supervisor(system):
    # The supervisor pings at half the WatchdogSec it was started with: a restart applies it.
    system.ns.install_unit(f"{UNIT}.d/watchdog.conf",
                           f"[Service]\nWatchdogSec={WATCHDOG}s\nTimeoutAbortSec=5s\n"
                           f"LimitCORE=0\n")
    system.ns.daemon_reload()
    system.ns.systemctl("restart", UNIT, timeout=60)
    assert system.show("WatchdogUSec") == f"{WATCHDOG}s"
    wait_until(lambda: system.all_ready(4), 20, "4 ready after the restart")
    inner = int(system.show("MainPID"))
    restarts = int(system.show("NRestarts"))
    host_pid = system.ns.main_pid(UNIT)
    stopped = time.monotonic()
    os.kill(host_pid, signal.SIGSTOP)
    try:
        wait_until(lambda: int(system.show("MainPID") or 0) not in (0, inner), WATCHDOG + 20,
                   "systemd to restart the stopped supervisor")
        replaced = time.monotonic() - stopped
    finally:
        try:
            os.kill(host_pid, signal.SIGCONT)  # if it is still there, let it die
        except ProcessLookupError:
            pass
    wait_until(lambda: system.show("ActiveState") == "active" and system.all_ready(4), 30,
               "the restarted deployment ready")
    back = time.monotonic() - stopped
    assert int(system.show("NRestarts")) == restarts + 1
    assert system.show("StatusText") == "web 4/4 ready"
    # Only the watchdog ends a stopped process here, and not before it missed a ping: the last
    # one came at most WATCHDOG/2 before the stop. (systemd's "Watchdog timeout" message goes
    # to its console, not to the journal, so the test cannot read it.)
    assert replaced >= WATCHDOG / 2, f"replaced {replaced:.1f}s after the stop: not the watchdog"
    print(f"watchdog: stopped supervisor replaced after {replaced:.1f}s, 4/4 ready after "
          f"{back:.1f}s")
