"""pebble (Debian's ACME server for testing clients) and pebble-challtestsrv (its DNS: every
name is 127.0.0.1) on loopback, for the tests that need a real ACME CA (test_acme.py,
test_dbus.py). pebble's API certificate is made here (tls_certs.py): a spec's acme.ca_root makes
lego trust it. pebble validates HTTP-01 by connecting to the domain on its httpPort: the test's
http_listen port, served by the supervisor's HTTP-01 listener (deploy-server)."""
from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from harness import free_port, wait_until
from tls_certs import make_ca, make_leaf

DOMAIN = "app.acme.test"

# For the modules that use it: `pytestmark = needs_pebble` (or on single tests).
needs_pebble = pytest.mark.skipif(
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


def renewed(dep, count: int):
    """A status predicate: `count` renewal attempts (issue included) finished."""
    def check(status):
        tls = status["services"][0].get("tls") or {}
        result = (tls.get("last_renewal") or {}).get("result", "")
        return result not in ("", "running") and dep_attempts(dep) >= count
    return check


def dep_attempts(dep) -> int:
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("deployctl_acme_renewals_total{"))
