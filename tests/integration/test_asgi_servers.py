"""Every ASGI server of FastAPI's deployment guide that Debian 12 ships, under deployctl on the
socket the supervisor holds: Uvicorn (asyncio + h11, the pure-Python install), Uvicorn with
uvloop + httptools ("uvicorn[standard]"), gunicorn with UvicornWorker (socket activation),
Hypercorn (--bind fd://3) and Daphne (--fd 3), each from its example in
config/examples/fastapi/, with 2 replicas. Each: replicas ready, every replica answers, small
keep-alive responses without the ~40 ms Nagle stall, kill -9 of one under client load with no
failed request, a rolling restart under client load with nothing refused (and at most the
app server's own unanswered closes), and `down` leaves no process.

Also, deterministic: a connection accepted on a socket deployctl bound has TCP_NODELAY set,
though the replica never sets it (tests/workers/worker.py reports getsockopt)."""
import http.client
import os
import signal
import statistics
import time
from pathlib import Path

import pytest

from harness import (all_ready, client_loops, deploy_example, descendants, failures_by_kind,
                     get_json, replaced, socket_inodes, summaries, wait_until)

REPLICAS = 2
START_TIMEOUT = 60  # `up -d` of Python replicas on a busy 2-core machine
CLIENTS = 2  # client loops (a new connection per request) running during kill and restart
NAGLE_STALL_MS = 40  # Linux's minimum delayed-ACK time: what a Nagle stall costs per response
KEEPALIVE_REQUESTS = 25

# server -> (example spec, replacements besides the port)
SERVERS = {
    "uvicorn": ("uvicorn.toml", {"replicas = 3": f"replicas = {REPLICAS}"}),
    "uvicorn-standard": ("uvicorn-standard.toml", {"replicas = 4": f"replicas = {REPLICAS}"}),
    "gunicorn-uvicornworker": ("gunicorn.toml", {"replicas = 2": f"replicas = {REPLICAS}",
                                                 'timeout = "35s"': 'timeout = "10s"'}),
    "hypercorn": ("hypercorn.toml", {"replicas = 4": f"replicas = {REPLICAS}"}),
    "daphne": ("daphne.toml", {"replicas = 4": f"replicas = {REPLICAS}"}),
}


# --- helpers ------------------------------------------------------------------------------

def keepalive_latencies_ms(port: int, count: int) -> list[float]:
    """Times `count` GET / one after another on ONE keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return latencies


def tcp_connection_inodes(supervisor: int) -> set[str]:
    """Socket inodes of every TCP socket on the machine that is not listening, except the
    accepted ends of the supervisor's kept health-probe connections (idle between checks, and
    replaced by the supervisor when their replica dies: no client's request)."""
    rows = [line.split() for table in ("/proc/net/tcp", "/proc/net/tcp6")
            for line in Path(table).read_text().splitlines()[1:]]
    own = socket_inodes(supervisor)
    probe_ports = {row[1].rsplit(":", 1)[1] for row in rows if row[9] in own}
    return {row[9] for row in rows
            if row[3] != "0A" and row[2].rsplit(":", 1)[1] not in probe_ports}  # 0A: LISTEN


def holds_a_connection(pids: list[int], supervisor: int) -> bool:
    """True if any of `pids` has an open TCP connection (an accepted client) among its fds."""
    connections = tcp_connection_inodes(supervisor)
    for pid in pids:
        try:
            entries = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{entry}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in connections:
                return True
    return False


def freeze_between_requests(pid: int, supervisor: int, timeout: float = 15.0) -> list[int]:
    """SIGSTOPs `pid` and its descendants at a moment when none of them holds a client
    connection; returns the frozen pids. A request inside a process killed with SIGKILL dies
    with it under any supervisor: freezing first makes every failure of the kill deployctl's."""
    def frozen_idle():
        tree = [pid, *descendants(pid)]
        for member in tree:
            os.kill(member, signal.SIGSTOP)
        if not holds_a_connection(tree, supervisor):
            return tree
        for member in tree:
            os.kill(member, signal.SIGCONT)
        return None
    return wait_until(frozen_idle, timeout, f"pid {pid} frozen holding no connection",
                      interval=0.01)


# --- TCP_NODELAY, deterministic -----------------------------------------------------------

NODELAY_SPEC = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 1
listen = ["127.0.0.1:@PORT@"]
"""


def test_accepted_connections_inherit_tcp_nodelay_from_the_supervisor_socket(deployment):
    dep = deployment(NODELAY_SPEC)
    assert dep.up().returncode == 0
    connection = http.client.HTTPConnection("127.0.0.1", dep.port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("X-TCP-Nodelay") == "1", \
        "the replica's accepted connection has Nagle's algorithm on"
    assert dep.down().returncode == 0
    assert dep.leftovers() == {}


# --- readiness on the shared socket --------------------------------------------------------

LATE_SECONDS = 2.0  # web.1 only starts uvicorn this long after it was spawned
UVICORN_COMMAND = '["/usr/bin/python3", "-m", "uvicorn", "main:app", "--fd", "3",'
LATE_SCRIPT = f'[ {{replica}} = 0 ] || sleep {LATE_SECONDS}; exec "$0" "$@"'
LATE_COMMAND = (f'["/bin/sh", "-c", \'{LATE_SCRIPT}\', '
                '"/usr/bin/python3", "-m", "uvicorn", "main:app", "--fd", "3",')


def test_replica_is_ready_only_once_it_accepts_on_the_shared_socket(deployment):
    """The http probe of a shared socket is answered by web.0 long before web.1 listens: web.1
    must not count as ready (a rollout would then stop an old replica too early)."""
    dep = deploy_example(deployment, "uvicorn.toml", {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"',
                                                      "replicas = 3": "replicas = 2",
                                                      UVICORN_COMMAND: LATE_COMMAND})
    run = dep.up(timeout=START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()  # `up -d` returns once every replica is ready
    assert all_ready(status, 2), dep.diagnostics()
    late = next(r for r in status["services"][0]["replicas"] if r["id"] == "web.1")
    assert late["uptime_ms"] >= LATE_SECONDS * 1000, f"web.1 ready before it listened: {late}"
    assert "not seen accepting" not in dep.log_text(), dep.diagnostics()


# --- every server -------------------------------------------------------------------------

@pytest.mark.parametrize("server", SERVERS)
def test_server_shares_the_socket_survives_kill_9_and_rolls(server, deployment, measure):
    spec, replacements = SERVERS[server]
    dep = deploy_example(deployment, spec, {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"',
                                            **replacements})
    run = dep.up(timeout=START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, REPLICAS), dep.diagnostics()
    replica_ids = set(dep.replica_pids(status))

    # Every replica answers on the one shared socket.
    seen: set[str] = set()
    wait_until(lambda: seen.add(get_json(dep.port, "/")["replica"]) or seen >= replica_ids,
               20, f"answers from every replica of {sorted(replica_ids)} (seen {seen})",
               interval=0)
    assert seen == replica_ids

    # Small keep-alive responses: no Nagle stall (see TCP_NODELAY above).
    latencies = keepalive_latencies_ms(dep.port, KEEPALIVE_REQUESTS)
    median = statistics.median(latencies)
    assert median < NAGLE_STALL_MS / 2, f"{server}: keep-alive latencies {latencies} ms"

    # kill -9 of one replica while clients keep connecting: no request fails.
    victim = dep.replica_pids(status)["web.1"]
    with client_loops(dep.port, [("/", "/items")] * CLIENTS) as loops:
        freeze_between_requests(victim, dep.supervisor_pid)
        os.kill(victim, signal.SIGKILL)
        dep.wait_for(lambda s: replaced(s, "web.1", victim) and all_ready(s, REPLICAS),
                     timeout=30, what=f"web.1 of {server} replaced after kill -9")
        for loop in loops:
            loop.wait_for_successes(loop.successes + 5, 20)
    assert failures_by_kind(loops) == {}, summaries(loops)
    killed_ok = sum(loop.successes for loop in loops)

    # Rolling restart while clients keep connecting: nothing refused, nothing lost in the
    # port; a replica told to stop may close a connection it accepted but had not read yet
    # (uvicorn does, see docs/bench.md): at most one per client per replaced replica.
    before = dep.replica_pids()
    with client_loops(dep.port, [("/", "/items")] * CLIENTS) as loops:
        restart = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=60)
        assert restart.returncode == 0, restart.describe()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 5, 20)
    failures = failures_by_kind(loops)
    resets = failures.pop("reset", 0)
    assert failures == {} and resets <= CLIENTS * REPLICAS, summaries(loops)
    after = dep.replica_pids()
    assert len(after) == REPLICAS and not set(after.values()) & set(before.values())
    measure(f"{server}: keep-alive median {median:.1f} ms; kill -9: {killed_ok} ok, 0 failed; "
            f"rolling restart {restart.seconds:.1f} s: "
            f"{sum(loop.successes for loop in loops)} ok, {resets} closed unanswered")

    assert dep.down().returncode == 0
    assert dep.leftovers() == {}


# --- the quick start ----------------------------------------------------------------------

def test_quickstart_spec_migrates_serves_with_a_memory_limit_and_goes_down(deployment):
    dep = deploy_example(deployment, "quickstart.toml",
                         {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"'})
    run = dep.up(timeout=START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 4), dep.diagnostics()
    assert [item["name"] for item in get_json(dep.port, "/items")] == \
        ["apple", "banana", "cherry"]
    for replica in status["services"][0]["replicas"]:
        assert replica["memory"]["max"] == 256 * 1024 * 1024, replica
    assert dep.down().returncode == 0
    assert dep.leftovers() == {}
