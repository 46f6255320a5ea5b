"""ACME under deployctl ([services.X.tls] acme, issue 13), offline and real: Debian's pebble and
pebble-challtestsrv on loopback (acme_pebble.py), lego (Debian) run by the supervisor as the
client. Nothing is mocked."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import shutil

from acme_pebble import DOMAIN, acme_spec, needs_pebble, pebble_for, renewed  # noqa: F401 (a fixture)
from harness import RequestLoop, all_ready, free_port, is_alive, wait_gone, wait_until
from tls_certs import TlsClientLoop, https_get

pytestmark = needs_pebble


def tls_get(port: int, root: Path) -> tuple[int, str]:
    """One GET over a new TLS connection verified against `root` as DOMAIN: (status, serial)."""
    return https_get(port, root, "/whoami", hostname=DOMAIN)


def tls_status(dep) -> dict:
    return dep.status()["services"][0]["tls"]


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


def test_reload_obtains_the_certificate_before_applying_and_a_failure_changes_nothing(
        deployment, pebble_for, measure):
    """A reload that adds [tls] acme waits for lego (and starts the HTTP-01 listener) before
    any replica loads the certificate; a reload to new domains while the ACME server is down
    is refused and what runs keeps serving."""
    http_port = free_port()
    pebble = pebble_for(http_port)
    acme = acme_spec(pebble, http_port)
    plain = acme[:acme.index("[services.web.tls]")]
    dep = deployment(plain)
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready plain-HTTP replicas")
    assert dep.status()["services"][0].get("tls") is None

    dep.write_spec(acme)
    started = time.monotonic()
    run = dep.deployctl("reload", str(dep.spec_path), timeout=120)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    reloaded_in = time.monotonic() - started
    status = dep.wait_for(lambda s: all_ready(s, 2) and s["services"][0]["rollout"] == "done",
                          timeout=60, what="2 ready HTTPS replicas")
    assert status["services"][0]["tls"]["last_renewal"]["result"].startswith("ok: ")
    root = pebble.issuing_root()
    code, serial = tls_get(dep.port, root)
    assert code == 200
    log = dep.log_text()
    assert log.index("acme: new certificate installed") < log.index("reload: "), log
    assert "rolling restart" not in log  # the reload's own rollout, no second one for the file
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    conn.request("GET", "/x?y=1", headers={"Host": DOMAIN})
    response = conn.getresponse()
    assert (response.status, response.getheader("Location")) == (
        308, f"https://{DOMAIN}:{dep.port}/x?y=1")
    conn.close()

    # New domains: a certificate for them first, then the replicas roll onto it.
    pids = dep.replica_pids()
    dep.write_spec(acme.replace(f'["{DOMAIN}"]', f'["www.{DOMAIN}"]'))
    run = dep.deployctl("reload", str(dep.spec_path), timeout=120)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2) and s["services"][0]["rollout"] == "done"
                 and not set(pids.values()) & {r["pid"] for r in s["services"][0]["replicas"]},
                 timeout=60, what="every replica on the new certificate")
    code, serial = https_get(dep.port, root, "/", hostname=f"www.{DOMAIN}")
    assert code == 200

    # Back to the first name with the ACME server down: refused, nothing changes (a changed
    # name always gets a new certificate, even where an older one is stored).
    pids = dep.replica_pids()
    pebble.stop()
    dep.write_spec(acme)
    refused = dep.deployctl("reload", str(dep.spec_path), timeout=200)
    assert refused.returncode == 1, refused.describe()
    assert "reload refused: web: no certificate could be obtained: error: lego failed" in \
        refused.stderr and "nothing was changed" in refused.stderr, refused.stderr
    assert dep.replica_pids() == pids
    assert https_get(dep.port, root, "/", hostname=f"www.{DOMAIN}") == (200, serial)
    assert dep.status()["services"][0]["tls"]["cert"].endswith(f"/www.{DOMAIN}.crt")
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    conn.request("GET", "/", headers={"Host": DOMAIN})
    assert conn.getresponse().status == 308  # the running listener still answers
    conn.close()

    # Without [tls] again: applied without the ACME server; the HTTP-01 listener stops.
    dep.write_spec(plain)
    run = dep.deployctl("reload", str(dep.spec_path), timeout=60)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    wait_until(lambda: not port_open(http_port), 10, "the HTTP-01 listener gone")
    assert "web: acme: no longer in the spec" in dep.log_text()
    measure(f"acme reload: certificate obtained and applied in {reloaded_in:.1f}s")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def dep_attempts(dep) -> int:
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("deployctl_acme_renewals_total{"))


class Redirects(RequestLoop):
    """http:// GETs on http_listen, each on a new connection, bounded in count and time: every
    answer must be the 308 to https://."""

    def __init__(self, port: int, limit: int = 4000, seconds: float = 90.0):
        super().__init__(limit, seconds, pause=0.01)
        self.port = port
        self.failures: list[str] = []
        self.successes = 0

    def attempt(self) -> None:
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


def acme_listener_pid(dep) -> int:
    record = json.loads((dep.state_dir / "replicas.json").read_text())
    [pid] = [entry["pid"] for entry in record if entry["id"] == "acme-listener web"]
    return pid


def renew_rolls(dep, root: Path, clients: TlsClientLoop) -> str:
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


def acme_up(deployment, pebble_for):
    """A deployment of acme_spec up with its certificate and 2 ready replicas:
    (dep, http_port, pebble's issuing root, the served serial)."""
    http_port = free_port()
    pebble = pebble_for(http_port)
    dep = deployment(acme_spec(pebble, http_port))
    assert dep.up(timeout=120).returncode == 0, dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready replicas")
    root = pebble.issuing_root()
    _, serial = tls_get(dep.port, root)
    return dep, http_port, root, serial


def served_without_failures(measure, what: str, clients, redirects, new_serial: str) -> None:
    """Shows and checks what `clients` and `redirects` saw: none failed, and the renewed
    certificate (`new_serial`) served at least 20 connections."""
    measure(f"{what}: {sum(clients.serials.values())} TLS connections, "
            f"{len(clients.failures)} failed; {redirects.successes} http:// 308, "
            f"{len(redirects.failures)} failed")
    assert clients.failures == [], clients.failures[:5]
    assert redirects.failures == [], redirects.failures[:5]
    assert clients.serials[new_serial] >= 20


def test_acme_survives_an_upgrade_in_place_and_renews_after_it(deployment, pebble_for, measure):
    dep, http_port, root, serial = acme_up(deployment, pebble_for)
    pids, listener = dep.replica_pids(), acme_listener_pid(dep)
    before = tls_status(dep)
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(os.environ["DEPLOYCTL_BIN"], new_binary)
    with TlsClientLoop(dep.port, root, hostname=DOMAIN) as clients, Redirects(http_port) as redirects:
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
    served_without_failures(measure, "acme upgrade in place + renew", clients, redirects,
                            new_serial)
    assert dep_attempts(dep) == 2


def test_acme_survives_a_kill_9_of_the_supervisor_and_renews_after_it(
        deployment, pebble_for, measure):
    from test_crash import fully_supervised, keeper_pid, kill_supervisor
    dep, http_port, root, serial = acme_up(deployment, pebble_for)
    old_listener = acme_listener_pid(dep)
    dep.track_pid(old_listener, "the first HTTP-01 listener")
    with TlsClientLoop(dep.port, root, hostname=DOMAIN) as clients, Redirects(http_port) as redirects:
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
    served_without_failures(measure, "acme kill -9 + adoption + renew", clients, redirects,
                            new_serial)
    assert dep.down().returncode == 0
    assert wait_gone([new_listener], 5) == []


def test_one_lego_per_service_renew_and_reload_wait_for_each_other(deployment, pebble_for,
                                                                    tmp_path):
    """Two legos of one service could install each other's certificate: while a renewal runs,
    a reload that changes the service's acme settings is refused, and while a reload's lego
    runs, `renew` is refused as busy. A `lego` wrapper first on PATH holds each run at its start
    while the file `hold` exists, so the windows do not depend on timing."""
    http_port = free_port()
    pebble = pebble_for(http_port)
    acme = acme_spec(pebble, http_port)
    dep = deployment(acme)
    bin_dir, hold = tmp_path / "bin", tmp_path / "hold"
    bin_dir.mkdir()
    wrapper = bin_dir / "lego"
    wrapper.write_text(f'#!/bin/sh\ntouch "{tmp_path}/started-$$"\n'
                       f'while [ -e "{hold}" ]; do sleep 0.05; done\n'
                       f'exec {shutil.which("lego")} "$@"\n')
    wrapper.chmod(0o755)
    dep.env["PATH"] = f"{bin_dir}:{dep.env['PATH']}"

    def legos_started() -> int:
        return len(list(tmp_path.glob("started-*")))

    assert dep.up(timeout=120).returncode == 0, dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 ready HTTPS replicas")
    assert legos_started() == 1
    try:
        hold.touch()
        assert dep.deployctl("renew", "--name", dep.name).returncode == 0
        wait_until(lambda: legos_started() == 2, 10, "the renewal's lego")
        pids = dep.replica_pids()
        dep.write_spec(acme.replace(f'["{DOMAIN}"]', f'["www.{DOMAIN}"]'))
        refused = dep.deployctl("reload", str(dep.spec_path))
        assert refused.returncode == 1, refused.describe()
        assert "a certificate request for 'web' is under way" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr and dep.replica_pids() == pids
        hold.unlink()
        dep.wait_for(renewed(dep, 2), timeout=60, what="the renewal done")

        hold.touch()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(dep.deployctl, "reload", str(dep.spec_path), timeout=120)
            wait_until(lambda: legos_started() == 3 or pending.done(), 10, "the reload's lego")
            busy = dep.deployctl("renew", "--name", dep.name)
            hold.unlink()
            reloaded = pending.result()
        assert busy.returncode == 6, busy.describe()
        assert "a reload is changing the acme settings of 'web'" in busy.stderr, busy.stderr
        assert reloaded.returncode == 0, reloaded.describe() + dep.diagnostics()
        assert legos_started() == 3
    finally:
        hold.unlink(missing_ok=True)
