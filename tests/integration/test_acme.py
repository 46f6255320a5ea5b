"""ACME under deployctl ([services.X.tls] acme, issue 13), offline and real: Debian's pebble (a
real ACME server made for testing clients) and pebble-challtestsrv (its DNS: every name is
127.0.0.1) on loopback, lego (Debian) run by the supervisor as the client. Nothing is mocked.
pebble's API certificate is made here (tls_certs.py): the spec's acme.ca_root makes lego trust
it. pebble validates HTTP-01 by connecting to the domain on its httpPort: that is the test's
http_listen port, served by the supervisor's HTTP-01 listener (deploy-server)."""
from __future__ import annotations

import http.client
import json
import re
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import all_ready, free_port, wait_until
from tls_certs import TlsClientLoop, https_get, make_ca, make_leaf

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


def acme_spec(pebble: Pebble, http_port: int, replicas: int = 2, extra: str = "") -> str:
    """`extra`: more lines for [services.web]."""
    return f'''
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = {replicas}
listen = ["127.0.0.1:@PORT@"]
{extra}

[services.web.tls]
acme = {{ domains = ["{DOMAIN}"], email = "ops@acme.test", directory = "{pebble.directory}", http_listen = "127.0.0.1:{http_port}", ca_root = "{pebble.ca}" }}
'''


def tls_get(port: int, root: Path) -> tuple[int, str]:
    """One GET over a new TLS connection verified against `root` as DOMAIN: (status, serial)."""
    return https_get(port, root, "/whoami", hostname=DOMAIN)


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
    """The replicas run as nobody, who cannot reach the 0700 state directory: they load the
    certificate from the sealed descriptors the supervisor hands them."""
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port,
                               extra='user = "nobody"\ngroup = "nogroup"\nworking_dir = "/"'))
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
    for pid in dep.replica_pids().values():
        assert os.stat(f"/proc/{pid}").st_uid == 65534
        assert os.readlink(f"/proc/{pid}/fd/6").startswith("/memfd:deployctl-tls")  # cert
        assert os.readlink(f"/proc/{pid}/fd/7").startswith("/memfd:deployctl-tls")  # key
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
    with TlsClientLoop(dep.port, root, hostname=DOMAIN) as clients:
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
