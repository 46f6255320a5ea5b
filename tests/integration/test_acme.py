"""ACME under deployctl ([services.X.tls] acme, issue 13), offline and real: Debian's pebble (a
real ACME server made for testing clients) and pebble-challtestsrv (its DNS: every name is
127.0.0.1) on loopback, lego (Debian) run by the supervisor as the client. Nothing is mocked.
pebble's API certificate is made here (tls_certs.py): the spec's acme.ca_root makes lego trust
it. pebble validates HTTP-01 by connecting to the domain on its httpPort: that is the test's
http_listen port, served by the supervisor's HTTP-01 listener (deploy-server)."""
from __future__ import annotations

import collections
import http.client
import json
import re
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness import all_ready, free_port, is_alive, wait_gone, wait_until
from tls_certs import make_ca, make_leaf

DOMAIN = "app.acme.test"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pebble", "pebble-challtestsrv", "lego")),
    reason="needs Debian's pebble and lego (packaging/install-deps.sh installs them)")


class Pebble:
    """pebble and pebble-challtestsrv on free loopback ports; stop()/start() stop and restart
    pebble alone (an ACME server that is down). Every process is killed at close()."""

    def __init__(self, directory: Path, http_port: int):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = make_ca(directory / "api")  # pebble's own HTTPS certificate: lego's ca_root
        cert, key = make_leaf(directory / "api", "pebble")
        self.port, self.management, self.dns = free_port(), free_port(), free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        self.config = directory / "pebble-config.json"
        self.config.write_text(json.dumps(config))
        self.env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                    "PEBBLE_AUTHZREUSE": "0"}
        self.procs: list[subprocess.Popen] = []
        self.dns_proc = self._spawn("challtestsrv", [
            "pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns}", "-http01", "",
            "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _spawn(self, label: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{label}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.proc = self._spawn("pebble", ["pebble", "-config", str(self.config),
                                           "-dnsserver", f"127.0.0.1:{self.dns}"])
        wait_until(lambda: self._answers(), 20, "pebble's directory")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def _answers(self) -> bool:
        assert self.proc.poll() is None, (self.dir / "pebble.log").read_text()
        try:
            self.get(self.directory)
            return True
        except OSError:
            return False

    def get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.read()

    def issuing_root(self) -> Path:
        """The root pebble signs certificates with (management API /roots/0)."""
        path = self.dir / "issuing-root.pem"
        path.write_bytes(self.get(f"https://127.0.0.1:{self.management}/roots/0"))
        return path

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def pebble_for(tmp_path):
    made = []

    def make(http_port: int) -> Pebble:
        made.append(Pebble(tmp_path / "pebble", http_port))
        return made[-1]

    yield make
    for pebble in made:
        pebble.close()


def acme_spec(pebble: Pebble, http_port: int, replicas: int = 2) -> str:
    return f'''
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = {replicas}
listen = ["127.0.0.1:@PORT@"]

[services.web.tls]
acme = {{ domains = ["{DOMAIN}"], email = "ops@acme.test", directory = "{pebble.directory}", http_listen = "127.0.0.1:{http_port}", ca_root = "{pebble.ca}" }}
'''


def tls_get(port: int, root: Path, timeout: float = 5.0) -> tuple[int, str]:
    """One GET over a new TLS connection verified against `root` as DOMAIN: (status, serial)."""
    context = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            serial = tls.getpeercert()["serialNumber"]
            tls.sendall(f"GET /whoami HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n"
                        .encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0), serial


class Clients(threading.Thread):
    """New verified TLS connections one after the other, bounded in count and time."""

    def __init__(self, port: int, root: Path, limit: int = 4000, seconds: float = 60.0):
        super().__init__(daemon=True)
        self.port, self.root, self.limit, self.seconds = port, root, limit, seconds
        self.stopping = threading.Event()
        self.failures: list[str] = []
        self.serials: collections.Counter = collections.Counter()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            try:
                code, serial = tls_get(self.port, self.root)
                self.serials[serial] += 1
                if code != 200:
                    self.failures.append(f"HTTP {code}")
            except (OSError, ValueError) as error:
                self.failures.append(repr(error))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(30)


def tls_status(dep) -> dict:
    return dep.status()["services"][0]["tls"]


def renewed(dep, count: int):
    """A status predicate: `count` renewal attempts finished."""
    def check(status):
        tls = status["services"][0].get("tls") or {}
        result = (tls.get("last_renewal") or {}).get("result", "")
        return result not in ("", "running") and dep_attempts(dep) >= count
    return check


def dep_attempts(dep) -> int:
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("deployctl_acme_renewals_total{"))


def test_up_obtains_a_certificate_renews_it_rolling_and_survives_pebble_down(
        deployment, pebble_for, measure):
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port))
    started = time.monotonic()
    run = dep.up(timeout=120)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    issued_in = time.monotonic() - started
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready replicas")
    root = pebble.issuing_root()

    # The certificate verifies against pebble's root, with openssl's own client.
    check = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{dep.port}", "-servername", DOMAIN,
         "-verify_return_error", "-verify_hostname", DOMAIN, "-CAfile", str(root), "-brief"],
        input="", capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stdout + check.stderr
    tls = tls_status(dep)
    assert tls["source"] == "acme" and tls["subject"] == "" or DOMAIN in json.dumps(tls), tls
    assert tls["last_renewal"]["result"].startswith("ok: "), tls
    state = dep.state_dir / "acme"
    assert (state / "certificates" / f"{DOMAIN}.crt").exists()
    assert oct((state / "certificates" / f"{DOMAIN}.key").stat().st_mode & 0o777) == "0o600"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    lego_lines = re.findall(r" acme (?:out|err) \| (.*)", dep.service_log("web"))
    assert any("Server responded with a certificate" in line for line in lego_lines), lego_lines
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    assert 'deployctl_certificate_expiry_timestamp_seconds{service="web"}' in metrics, metrics
    assert 'deployctl_acme_renewals_total{service="web",result="ok"} 1' in metrics, metrics

    # HTTP on http_listen: 308 to https:// with host, path and query kept.
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    conn.request("GET", "/shop/item?id=7&x=y", headers={"Host": f"{DOMAIN}:{http_port}"})
    response = conn.getresponse()
    assert response.status == 308
    assert response.getheader("Location") == f"https://{DOMAIN}:{dep.port}/shop/item?id=7&x=y"
    conn.close()

    # A forced renewal: a new serial on the same port, 0 failed new connections meanwhile.
    _, old_serial = tls_get(dep.port, root)
    old_pids = set(dep.replica_pids().values())
    assert len(old_pids) == 2, dep.last_status
    assert "rolling restart" not in dep.log_text()  # the first certificate rolls nothing
    with Clients(dep.port, root) as clients:
        wait_until(lambda: clients.serials[old_serial] >= 20, 20, "connections before renewal")
        renew_started = time.monotonic()
        run = dep.deployctl("renew", "--name", dep.name)
        assert run.returncode == 0, run.describe()
        dep.wait_for(lambda s: all_ready(s, 2) and s["services"][0]["rollout"] == "done"
                     and not old_pids & {r["pid"] for r in s["services"][0]["replicas"]}
                     and tls_get(dep.port, root)[1] != old_serial,
                     timeout=60, what="every replica rolled onto the renewed certificate")
        renewed_in = time.monotonic() - renew_started
        _, new_serial = tls_get(dep.port, root)
        count_then = sum(clients.serials.values())
        wait_until(lambda: sum(clients.serials.values()) >= count_then + 20, 20,
                   "connections after the renewal")
    total = sum(clients.serials.values())
    measure(f"acme: first certificate in {issued_in:.1f}s (up); forced renewal rolled in "
            f"{renewed_in:.1f}s; {total} TLS connections, {len(clients.failures)} failed")
    assert clients.failures == [], clients.failures[:5]
    assert new_serial != old_serial

    # pebble down: the renewal fails clearly, backs off, the renewed certificate keeps serving.
    pebble.stop()
    run = dep.deployctl("renew", "web", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    failed = dep.wait_for(
        lambda s: (s["services"][0]["tls"].get("last_renewal") or {}).get("result", "")
        .startswith("error: "), timeout=60, what="the failed renewal in status")
    tls = failed["services"][0]["tls"]
    assert tls["renewal_failures"] == 1, tls
    assert "lego failed" in tls["last_renewal"]["result"], tls
    assert tls["next_renewal"] > tls["last_renewal"]["at"], tls
    table = dep.deployctl("status", "--name", dep.name).stdout
    assert "tls: acme CN=" + DOMAIN in table and "error: lego failed" in table, table
    assert "; next " + tls["next_renewal"] in table, table
    assert tls_get(dep.port, root) == (200, new_serial)
    assert "the current certificate keeps serving" in dep.log_text()
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    assert 'deployctl_acme_renewals_total{service="web",result="error"} 1' in metrics, metrics
    assert len(dep.replica_pids()) == 2


def test_up_fails_clearly_and_starts_nothing_when_the_acme_server_is_down(deployment, pebble_for):
    http_port = free_port()
    pebble = pebble_for(http_port)
    pebble.stop()
    dep = deployment(acme_spec(pebble, http_port))
    run = dep.up(timeout=120)
    assert run.returncode == 1, run.describe()
    assert "web: no certificate could be obtained: error: lego failed" in run.stderr, run.stderr
    assert "no replica was started" in run.stderr, run.stderr
    assert "web.0 started" not in dep.log_text()
    assert not (dep.state_dir / "acme" / "certificates" / f"{DOMAIN}.crt").exists()


class Redirects(threading.Thread):
    """http:// GETs on http_listen, each on a new connection, bounded in count and time: every
    answer must be the 308 to https://."""

    def __init__(self, port: int, limit: int = 4000, seconds: float = 90.0):
        super().__init__(daemon=True)
        self.port, self.limit, self.seconds = port, limit, seconds
        self.stopping = threading.Event()
        self.failures: list[str] = []
        self.successes = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/x?y=1", headers={"Host": DOMAIN})
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 308:
                    self.successes += 1
                else:
                    self.failures.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
            self.stopping.wait(0.01)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(30)


def acme_listener_pid(dep) -> int:
    record = json.loads((dep.state_dir / "replicas.json").read_text())
    [pid] = [entry["pid"] for entry in record if entry["id"] == "acme-listener web"]
    return pid


def renew_rolls(dep, root: Path, clients: Clients) -> str:
    """`deployctl renew`: every replica rolls onto a new serial while `clients` connect."""
    _, old_serial = tls_get(dep.port, root)
    old_pids = set(dep.replica_pids().values())
    run = dep.deployctl("renew", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    dep.wait_for(lambda s: all_ready(s, 2) and s["services"][0]["rollout"] == "done"
                 and not old_pids & {r["pid"] for r in s["services"][0]["replicas"]}
                 and tls_get(dep.port, root)[1] != old_serial,
                 timeout=60, what="every replica rolled onto the renewed certificate")
    count = sum(clients.serials.values())
    wait_until(lambda: sum(clients.serials.values()) >= count + 20, 20, "connections after")
    _, new_serial = tls_get(dep.port, root)
    assert new_serial != old_serial
    return new_serial


def test_acme_survives_an_upgrade_in_place_and_renews_after_it(deployment, pebble_for, measure):
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port))
    assert dep.up(timeout=120).returncode == 0, dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready replicas")
    root = pebble.issuing_root()
    _, serial = tls_get(dep.port, root)
    pids, listener = dep.replica_pids(), acme_listener_pid(dep)
    before = tls_status(dep)
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(os.environ["DEPLOYCTL_BIN"], new_binary)
    with Clients(dep.port, root) as clients, Redirects(http_port) as redirects:
        wait_until(lambda: clients.serials[serial] >= 20 and redirects.successes >= 20, 20,
                   "TLS connections and redirects before the upgrade")
        run = dep.deployctl("upgrade", "--name", dep.name, "--binary", str(new_binary),
                            timeout=40)
        assert run.returncode == 0, run.describe() + dep.diagnostics()
        status = dep.wait_for(lambda s: s["supervisor"]["upgrades"] == 1, what="the upgrade")
        assert dep.replica_pids(status) == pids
        # The certificate keeps being served; the schedule and report were carried.
        tls = status["services"][0]["tls"]
        assert tls["last_renewal"] == before["last_renewal"], (tls, before)
        assert tls["next_renewal"] == before["next_renewal"], (tls, before)
        assert dep_attempts(dep) == 1
        assert acme_listener_pid(dep) == listener  # the same listener, on the same socket
        assert "HTTP-01 listener on 127.0.0.1:%d (pid %d) taken over" % (http_port, listener) \
            in dep.log_text()
        new_serial = renew_rolls(dep, root, clients)
        wait_until(lambda: redirects.successes >= 40, 20, "redirects after the renewal")
    measure(f"acme upgrade in place + renew: {sum(clients.serials.values())} TLS connections, "
            f"{len(clients.failures)} failed; {redirects.successes} http:// 308, "
            f"{len(redirects.failures)} failed")
    assert clients.failures == [], clients.failures[:5]
    assert redirects.failures == [], redirects.failures[:5]
    assert clients.serials[new_serial] >= 20
    assert dep_attempts(dep) == 2


def test_acme_survives_a_kill_9_of_the_supervisor_and_renews_after_it(
        deployment, pebble_for, measure):
    from test_crash import fully_supervised, keeper_pid, kill_supervisor
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port))
    assert dep.up(timeout=120).returncode == 0, dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready replicas")
    root = pebble.issuing_root()
    _, serial = tls_get(dep.port, root)
    old_listener = acme_listener_pid(dep)
    dep.track_pid(old_listener, "the first HTTP-01 listener")
    with Clients(dep.port, root) as clients, Redirects(http_port) as redirects:
        wait_until(lambda: clients.serials[serial] >= 20 and redirects.successes >= 20, 20,
                   "TLS connections and redirects before the crash")
        pids, keeper = kill_supervisor(dep)
        count = redirects.successes
        wait_until(lambda: redirects.successes >= count + 10, 10, "redirects with no supervisor")
        run = dep.up(timeout=60)
        assert run.returncode == 0 and "adopted" in run.stdout, run.describe() + dep.diagnostics()
        dep.wait_for(lambda s: fully_supervised(s, pids), 15, "every replica adopted")
        wait_until(lambda: not is_alive(old_listener), 10, "the old listener's exit")
        new_listener = acme_listener_pid(dep)
        assert new_listener != old_listener
        dep.track_pid(new_listener, "the new HTTP-01 listener")
        dep.track_pid(keeper_pid(dep), "fd keeper")
        assert tls_get(dep.port, root) == (200, serial)
        new_serial = renew_rolls(dep, root, clients)
        count = redirects.successes
        wait_until(lambda: redirects.successes >= count + 20, 20, "redirects after the renewal")
    measure(f"acme kill -9 + adoption + renew: {sum(clients.serials.values())} TLS connections, "
            f"{len(clients.failures)} failed; {redirects.successes} http:// 308, "
            f"{len(redirects.failures)} failed")
    assert clients.failures == [], clients.failures[:5]
    assert redirects.failures == [], redirects.failures[:5]
    assert clients.serials[new_serial] >= 20
    assert dep.down().returncode == 0
    assert wait_gone([new_listener], 5) == []
