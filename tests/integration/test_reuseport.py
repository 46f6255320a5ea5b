"""`sockets = "per-replica"`: each replica listens on a SO_REUSEPORT socket of its own that
deployctl binds, and deployctl steers new connections away from a replica before stopping it
(docs/design-notes.md, "Per-replica sockets"). With clients that open a new connection per
request (`Connection: close`), a rolling restart fails none of them: with deploy-server, and
with uvicorn (uvloop + httptools), which closes connections it accepted but has not read yet
when it stops. `down` leaves no process and the port free."""
import errno
import os
import re
import signal
import socket
import subprocess

from harness import (ClientLoop, all_ready, deploy_example, failures_by_kind, get_json, replaced,
                     server_bin, summaries, wait_until)

START_TIMEOUT = 60
CLIENTS = 2  # client loops, each a new connection per request
REQUESTS = 20_000  # bound per loop; the restart ends them sooner
LOOP_SECONDS = 90

DEPLOY_SERVER = """
name = "@NAME@"

[services.web]
command = ["@SERVER@"]
replicas = 4
listen = ["127.0.0.1:@PORT@"]
sockets = "per-replica"

[services.web.stop]
timeout = "5s"
"""


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (SO_REUSEADDR, as servers set, so
    the clients' connections in TIME_WAIT do not count)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
        return True
    except OSError as error:
        assert error.errno == errno.EADDRINUSE, error
        return False
    finally:
        probe.close()


def listeners(port: int) -> int:
    """How many TCP sockets listen on 127.0.0.1:port (the per-replica sockets)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table.read().splitlines()[1:]
                   if line.split()[1] == wanted and line.split()[3] == "0A")


def restart_under_close_load(dep, paths):
    loops = [ClientLoop(dep.port, paths=paths, pause=0, max_requests=REQUESTS,
                        duration=LOOP_SECONDS) for _ in range(CLIENTS)]
    before = dep.replica_pids()
    with loops[0], loops[1]:
        for loop in loops:
            loop.wait_for_successes(3, 20)
        restart = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=90)
        assert restart.returncode == 0, restart.describe()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 5, 20)
    after = dep.replica_pids()
    assert not set(after.values()) & set(before.values()), (before, after)
    return loops, restart


WRK_SECONDS = 12  # bounded: wrk stops by itself; the restart takes a few seconds


def restart_under_wrk(dep) -> tuple[dict, int]:
    """`deployctl restart` while wrk -t2 -c16 sends `Connection: close` requests; wrk's socket
    errors other than timeouts (a slow answer on a busy machine is not a failure) and its total."""
    command = ["wrk", "-t2", "-c16", f"-d{WRK_SECONDS}s", "-H", "Connection: close",
               f"http://127.0.0.1:{dep.port}/"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as wrk:
        try:
            restart = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=90)
            assert restart.returncode == 0, restart.describe()
            output, _ = wrk.communicate(timeout=WRK_SECONDS + 30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
    assert wrk.returncode == 0, output
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    errors = dict(zip(("connect", "read", "write"), map(int, found.groups() if found else (0,) * 3)))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert not non_2xx, output
    return errors, int(re.search(r"(\d+) requests in", output)[1])


def roll_and_scale_under_load(dep, loops) -> float:
    """Under running client loops: a rolling restart, then scale 4 -> 2 -> 4. Each step closes
    sockets in the middle of the kernel's group and re-attaches the steering program: after an
    upgrade or a crash, only right if the supervisor knows the group's order. Returns the
    restart's seconds."""
    def more():
        for loop in loops:
            loop.wait_for_successes(loop.successes + 5, 20)
    before = dep.replica_pids()
    restart = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=90)
    assert restart.returncode == 0, restart.describe()
    assert set(dep.replica_pids().values()).isdisjoint(before.values())
    more()
    assert dep.scale(web=2).returncode == 0
    assert listeners(dep.port) == 2
    more()
    assert dep.scale(web=4).returncode == 0
    dep.wait_for(lambda s: all_ready(s, 4), 30, "4 ready replicas")
    more()
    assert listeners(dep.port) == 4
    return restart.seconds


def down_leaves_nothing(dep):
    assert dep.down().returncode == 0
    assert dep.leftovers() == {}
    assert listeners(dep.port) == 0
    assert port_is_free(dep.port)


def test_deploy_server_per_replica_sockets_serve_and_roll_with_no_failure(deployment, measure):
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()))
    run = dep.up()
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 4), dep.diagnostics()
    assert listeners(dep.port) == 4  # one socket per replica (the supervisor holds them)

    # New connections reach every replica.
    assert answering_replicas(dep.port, set(dep.replica_pids(status))) == \
        set(dep.replica_pids(status))

    loops, restart = restart_under_close_load(dep, ("/whoami",))
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert all_ready(dep.status(), 4)
    assert listeners(dep.port) == 4, "the old replicas' sockets are closed once they exited"
    log = dep.log_text()
    assert "queued connection(s)" not in log, dep.diagnostics()
    assert log.count("new connections steered away") == 4, "each old replica first: " + log
    measure(f"deploy-server x4 per-replica: rolling restart {restart.seconds:.1f} s, "
            f"{sum(loop.successes for loop in loops)} requests with Connection: close, 0 failed")
    down_leaves_nothing(dep)


def answering_replicas(port: int, expected: set[str]) -> set[str]:
    """The replicas that answer /whoami on new connections, polled until they are `expected`."""
    seen: set[str] = set()

    def whoami():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := client.recv(4096):
                reply += chunk
        seen.add(reply.split(b"\r\n\r\n", 1)[1].split()[0].decode())
        return seen >= expected
    wait_until(whoami, 20, f"answers from every replica of {sorted(expected)} (seen {seen})",
               interval=0)
    return seen


def test_crash_and_scale_keep_the_steering_right(deployment):
    """A replica killed with kill -9 restarts on its own socket; scaling down closes sockets in
    the middle of the kernel's group (the last one moves into the hole) and new connections
    still reach exactly the replicas that run. (Across an upgrade in place and a crash of the
    supervisor: test_upgrade.py, test_crash.py.)"""
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()))
    assert dep.up().returncode == 0
    victim = dep.replica_pids()["web.1"]
    os.kill(victim, signal.SIGKILL)
    dep.wait_for(lambda s: replaced(s, "web.1", victim) and all_ready(s, 4), timeout=20,
                 what="web.1 replaced after kill -9")
    assert listeners(dep.port) == 4, "the restarted replica keeps its socket"
    assert answering_replicas(dep.port, {"web.0", "web.1", "web.2", "web.3"})
    assert dep.scale(web=2).returncode == 0
    assert listeners(dep.port) == 2
    assert answering_replicas(dep.port, {"web.0", "web.1"}) == {"web.0", "web.1"}
    assert dep.scale(web=3).returncode == 0
    assert answering_replicas(dep.port, {"web.0", "web.1", "web.2"}) == \
        {"web.0", "web.1", "web.2"}

    down_leaves_nothing(dep)


def test_uvicorn_per_replica_sockets_roll_with_no_failure(deployment, measure):
    dep = deploy_example(deployment, "uvicorn-standard.toml", {
        'listen = ["127.0.0.1:8000"]':
            'listen = ["127.0.0.1:@PORT@"]\nsockets = "per-replica"',
        "replicas = 4": "replicas = 3"})
    run = dep.up(timeout=START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 3), dep.diagnostics()
    ids = set(dep.replica_pids(status))
    seen: set[str] = set()
    wait_until(lambda: seen.add(get_json(dep.port, "/")["replica"]) or seen >= ids, 20,
               f"answers from every replica of {sorted(ids)} (seen {seen})", interval=0)

    loops, restart = restart_under_close_load(dep, ("/", "/items"))
    assert failures_by_kind(loops) == {}, summaries(loops)
    measure(f"uvicorn (uvloop) x3 per-replica: rolling restart {restart.seconds:.1f} s, "
            f"{sum(loop.successes for loop in loops)} requests with Connection: close, 0 failed")

    # Under heavier load uvloop accepts connections in batches: a replica stopped while it
    # holds some closes them unanswered (with one shared socket, tens per restart). Here it is
    # steered away first and stopped once its queue is empty and what it accepted was read.
    errors, total = restart_under_wrk(dep)
    assert errors == {"connect": 0, "read": 0, "write": 0}, (errors, total)
    measure(f"uvicorn x3 per-replica under wrk -c16 Connection: close: {total} requests across "
            f"a rolling restart, socket errors {errors}")
    down_leaves_nothing(dep)


def test_per_replica_needs_exactly_one_listen_address(deployment):
    dep = deployment("""
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]
listen = ["127.0.0.1:@PORT@", "127.0.0.1:1"]
sockets = "per-replica"
""")
    run = dep.deployctl("validate", str(dep.spec_path))
    assert run.returncode == 2, run.describe()
    assert 'deploy.toml:7:11: services.web.sockets: "per-replica" needs exactly one listen ' \
           'address, got 2' in run.stderr, run.describe()
    dep.write_spec(dep.spec_path.read_text().replace('"per-replica"', '"per_replica"'))
    run = dep.deployctl("validate", str(dep.spec_path))
    assert run.returncode == 2 and 'did you mean "per-replica"?' in run.stderr, run.describe()
