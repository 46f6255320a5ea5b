"""The `http` health probe keeps one connection per replica open across its checks (HTTP/1.1
keep-alive), reconnects when the server closed it while idle, fails a replica that answers too
slowly, and holds no connection (nor any fd) of a replica that is gone. Real supervisors and
real HTTP servers on 127.0.0.1: a tiny asyncio server that logs every connection it accepts
and every request, and deploy-server for the restart loop."""
from __future__ import annotations

import collections
import os
import signal
import time

from harness import (all_ready, connections_to, free_port_range, replaced, server_bin, toml_array,
                     wait_until)

# One replica's server on 127.0.0.1:PORT. Appends "PID accept" / "PID request" to LOG. Closes a
# connection idle for IDLE seconds (0: never). While the file HANG exists, answers a request
# with its head (Content-Length: 3) and never sends the body.
COUNTING_SERVER = """
import asyncio, os, sys
port, log, idle, hang = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
def note(what):
    with open(log, "a") as out:
        out.write(f"{os.getpid()} {what}\\n")
async def serve(reader, writer):
    note("accept")
    try:
        while True:
            try:
                await asyncio.wait_for(reader.readuntil(b"\\r\\n\\r\\n"), idle or None)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            note("request")
            if os.path.exists(hang):
                writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\n")
                await writer.drain()
                await asyncio.sleep(3600)
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
            await writer.drain()
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""

SPEC = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@DIR@/server.py", "{{port}}", "@DIR@/connections", "{idle}",
           "@DIR@/hang"]
replicas = {replicas}
port = {port}

[services.web.health]
kind = "http"
interval = "{interval}"
timeout = "{timeout}"
failures = {failures}
start_period = "20s"

[services.web.restart]
backoff = {{ initial = "50ms", max = "1s", reset_after = "1s" }}
"""


def counting_deployment(deployment, replicas: int, interval: str, timeout: str,
                        failures: int = 1, idle: float = 0.0):
    base = free_port_range(replicas)
    dep = deployment(SPEC.format(replicas=replicas, port=base, interval=interval,
                                 timeout=timeout, failures=failures, idle=idle))
    (dep.dir / "server.py").write_text(COUNTING_SERVER)
    run = dep.up(timeout=60)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, replicas), timeout=30, what="replicas ready")
    return dep


def server_log(dep) -> dict[int, collections.Counter]:
    """{pid: Counter(accept=..., request=...)} from the servers' log."""
    counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    path = dep.dir / "connections"
    for line in (path.read_text().splitlines() if path.exists() else []):
        pid, what = line.split()
        counts[int(pid)][what] += 1
    return counts


def probe_counts(dep) -> dict[str, float]:
    """deployctl_health_probes_total of service web, by result."""
    metrics = dep.deployctl("metrics", "--name", dep.name).stdout
    prefix = 'deployctl_health_probes_total{service="web",result="'
    return {line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines() if line.startswith(prefix)}


def test_one_connection_per_replica_carries_all_its_checks(deployment, measure):
    dep = counting_deployment(deployment, replicas=2, interval="500ms", timeout="500ms",
                              failures=3)
    pids = list(dep.replica_pids().values())

    def enough_checks():
        log = server_log(dep)
        return all(log[pid]["request"] >= 12 for pid in pids)
    wait_until(enough_checks, 30, "12 checks of each replica")
    log = server_log(dep)
    measure(f"requests per accepted connection: "
            f"{ {pid: (log[pid]['request'], log[pid]['accept']) for pid in pids} }")
    for pid in pids:
        assert log[pid]["accept"] == 1, (pid, log, probe_counts(dep))
    status = dep.status()
    assert all(r["restarts"] == 0 and r["health"] == "healthy"
               for r in status["services"][0]["replicas"]), status


def test_a_server_closing_idle_connections_stays_healthy(deployment):
    # The server closes a connection idle for 1 s; checks come every 2 s, so each finds its
    # kept connection closed. That is a reconnect, not a failed check (one failure would
    # already make the replica unhealthy: failures = 1).
    dep = counting_deployment(deployment, replicas=2, interval="2s", timeout="2s", failures=1,
                              idle=1.0)
    pids = list(dep.replica_pids().values())
    before = probe_counts(dep)
    wait_until(lambda: all(server_log(dep)[pid]["request"] >= 5 for pid in pids), 30,
               "5 checks of each replica")
    after = probe_counts(dep)
    assert after.get("fail", 0) == before.get("fail", 0), (before, after, dep.log_text())
    assert after["pass"] >= before["pass"] + 6, (before, after)
    log = server_log(dep)
    for pid in pids:  # every check found its connection closed: one connection per check
        assert log[pid]["accept"] >= log[pid]["request"] - 1, log
    status = dep.status()
    assert set(dep.replica_pids(status).values()) == set(pids), status
    assert all(r["restarts"] == 0 for r in status["services"][0]["replicas"]), status


def test_a_replica_that_hangs_after_the_headers_fails_within_its_timeout(deployment, measure):
    dep = counting_deployment(deployment, replicas=1, interval="300ms", timeout="200ms",
                              failures=2)
    (dep.dir / "hang").touch()
    started = time.monotonic()

    def restarted(status):
        return status["services"][0]["replicas"][0]["restarts"] >= 1
    status = dep.wait_for(restarted, timeout=10, what="web.0 restarted after failing its checks")
    elapsed = time.monotonic() - started
    (dep.dir / "hang").unlink()
    replica = status["services"][0]["replicas"][0]
    assert replica["last_exit"]["reason"] == "health", status
    measure(f"hang after the headers -> restarted for health in {elapsed * 1000:.0f} ms "
            f"(2 checks of 300ms with a 200ms timeout)")
    events = dep.deployctl("events", "--name", dep.name).stdout
    assert "health probe failed: timed out after 200ms" in events, events
    dep.wait_for(lambda s: all_ready(s, 1), timeout=30, what="the new web.0 ready")


# --- the restart loop ---------------------------------------------------------------------

RESTART_SPEC = """
name = "@NAME@"

[services.web]
command = {command}
replicas = 2
port = {port}

[services.web.health]
kind = "http"
interval = "100ms"
timeout = "100ms"
start_period = "20s"

[services.web.restart]
backoff = {{ initial = "10ms", max = "20ms", reset_after = "10ms", jitter = 0.0 }}
crash_loop = {{ restarts = 10000, within = "60s" }}
"""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_fd_leak_across_200_restarts(deployment, measure):
    base = free_port_range(2)
    command = toml_array([server_bin(), "--listen", "127.0.0.1:{port}"])
    dep = deployment(RESTART_SPEC.format(command=command, port=base))
    run = dep.up(timeout=60)
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="2 replicas ready")
    supervisor = dep.supervisor_pid
    ports = {base, base + 1}
    wait_until(lambda: connections_to(supervisor, ports) == 2, 10,
               "the supervisor's kept connection to each replica")
    before = fd_count(supervisor)

    restarts = 0
    while restarts < 200:  # each round: both replicas checked over a kept connection, killed
        wait_until(lambda: connections_to(supervisor, ports) == 2, 10,
                   f"a kept connection to each replica after {restarts} restarts")
        pids = dep.replica_pids()
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        dep.wait_for(lambda s: all_ready(s, 2) and
                     all(replaced(s, rid, old) for rid, old in pids.items()),
                     timeout=30, what=f"both replicas back after {restarts} restarts")
        restarts += 2
    wait_until(lambda: connections_to(supervisor, ports) == 2, 10, "the new kept connections")
    after = fd_count(supervisor)
    measure(f"supervisor fds: {before} before, {after} after {restarts} restarts")
    assert after <= before + 1, (before, after)  # +1: a probe of a new replica may be in flight
