"""Issue 11, the core findings, with real processes, limits, signals and sockets:
1. a stop always finishes and nothing is spawned while stopping; a second `down` re-sends the
   stop; `scale` and `reload` past the fd limit are refused and change nothing;
3. `reload` closes listen sockets no service uses and hands a bound address to its new owner;
7. one replica's control messages cost the supervisor a bounded share of a core;
9. a replica in backoff shows no health verdict; services are listed in file order."""
import errno
import os
import signal
import socket
import subprocess
import time

from harness import (all_ready, deployctl_bin, http_get, replica_by_id, service_by_name,
                     sleepers, wait_until)
from test_fd_limits import cpu_seconds, up_limited

WORKERS = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 2
"""


def background(dep, *args: str) -> subprocess.Popen:
    """`deployctl ARGS` started now, not waited for (its request queues at a stopped
    supervisor)."""
    return subprocess.Popen([deployctl_bin(), *args], env=dep.env, cwd=dep.dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pending_connections(path) -> int:
    """Connections waiting in the backlog of the unix socket listening at `path` (ss Recv-Q)."""
    listing = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if str(path) in fields:
            return int(fields[2])
    return -1


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


# --- finding 1 ---------------------------------------------------------------------------------

def test_scale_restart_and_down_queued_at_a_stopped_supervisor_leave_nothing(deployment):
    dep = deployment(WORKERS)
    assert dep.up().returncode == 0
    pid = dep.status()["pid"]
    spec = str(dep.spec_path)
    os.kill(pid, signal.SIGSTOP)
    try:
        queued = []
        for args in (("scale", "web=4", "-f", spec), ("restart", "-f", spec), ("down", spec)):
            queued.append(background(dep, *args, "--timeout", "40s"))
            # In this order: each connection waits in the backlog before the next one comes.
            wait_until(lambda: pending_connections(dep.socket_path) == len(queued), 10,
                       f"{args[0]} queued at the stopped supervisor")
    finally:
        os.kill(pid, signal.SIGCONT)
    code, output = finish(queued[2], 45)
    assert code == 0, f"down: exit {code}\n{output}"
    for process in queued[:2]:
        finish(process, 10)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the supervisor exited")
    assert not dep.leftovers(), dep.leftovers()


SIGTERM_TWICE = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "-c", "import os, signal, time\\nseen = []\\ndef on_term(*_):\\n    seen.append(1)\\n    if len(seen) == 2: raise SystemExit(0)\\nsignal.signal(signal.SIGTERM, on_term)\\nopen('@DIR@/armed.%d' % os.getpid(), 'w').close()\\nwhile True: time.sleep(1)"]
replicas = 2

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "60s"
"""


def test_a_second_down_sends_the_stop_signal_again(deployment):
    dep = deployment(SIGTERM_TWICE)
    assert dep.up().returncode == 0
    pids = list(dep.replica_pids().values())
    wait_until(lambda: all((dep.dir / f"armed.{pid}").exists() for pid in pids), 10,
               "the replicas' SIGTERM handlers")
    first = dep.deployctl("down", str(dep.spec_path), "--timeout", "1s")
    assert first.returncode == 7, first.describe()  # the replicas wait for a second SIGTERM
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    second = dep.deployctl("down", str(dep.spec_path), "--timeout", "20s", timeout=30)
    assert second.returncode == 0, second.describe()
    assert second.seconds < 10, second.describe()
    assert "down requested again; sending the stop signal again" in dep.log_text()
    assert not dep.leftovers(), dep.leftovers()


def test_scale_and_reload_past_the_fd_limit_are_refused_and_change_nothing(deployment):
    dep = deployment(sleepers(2))
    assert up_limited(dep, 256, 256).returncode == 0
    run = dep.scale(web=100)
    assert run.returncode == 1, run.describe()
    assert "scale web=100 needs about 566 file descriptors" in run.stderr, run.describe()
    assert "RLIMIT_NOFILE) is 256" in run.stderr, run.describe()
    status = dep.status()
    assert service_by_name(status, "web")["desired"] == 2
    assert len(status["services"][0]["replicas"]) == 2
    dep.write_spec(sleepers(100))
    run = dep.deployctl("reload", str(dep.spec_path))
    assert run.returncode == 1, run.describe()
    assert "needs about 566 file descriptors" in run.stderr, run.describe()
    assert "nothing was changed" in run.stderr, run.describe()
    assert service_by_name(dep.status(), "web")["desired"] == 2
    assert dep.scale(web=20).returncode == 0  # what fits still works


# --- finding 3 ---------------------------------------------------------------------------------

LISTENING = """
name = "@NAME@"

[services.SERVICE]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.jobs]
command = ["/bin/sleep", "600"]
health = { kind = "none" }
"""


def refused(port: int) -> bool:
    with socket.socket() as client:
        client.settimeout(2)
        return client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def reload(dep, name: str | None):
    text = LISTENING.replace("SERVICE", name) if name else LISTENING.split("[services.SERVICE]")[0] \
        + "[services.jobs]" + LISTENING.split("[services.jobs]")[1]
    dep.write_spec(text)
    return dep.deployctl("reload", str(dep.spec_path), timeout=30)


def test_reload_closes_a_removed_services_socket_and_hands_an_address_over(deployment):
    dep = deployment(LISTENING.replace("SERVICE", "web"))
    assert dep.up().returncode == 0
    assert http_get(dep.port).body.startswith("web.")

    run = reload(dep, "api")  # renamed, same address
    assert run.returncode == 0, run.describe()
    dep.wait_for(lambda s: all_ready(s, 3) and [x["name"] for x in s["services"]] == ["api", "jobs"],
                 timeout=20, what="api ready, web gone")
    assert http_get(dep.port).body.startswith("api.")

    run = reload(dep, "web")  # and back
    assert run.returncode == 0, run.describe()
    dep.wait_for(lambda s: all_ready(s, 3) and s["services"][0]["name"] == "web", timeout=20,
                 what="web back")
    assert http_get(dep.port).body.startswith("web.")

    run = reload(dep, None)  # removed: its port is refused once its replicas are gone
    assert run.returncode == 0, run.describe()
    assert refused(dep.port), "the removed service's port still accepts connections"


# --- finding 7 ---------------------------------------------------------------------------------

FLOODER = """
name = "@NAME@"

[services.flood]
command = ["@PYTHON@", "@WORKER@", "flood-watchdog"]
health = { kind = "control", interval = "30s" }
"""


def test_a_replica_flooding_watchdog_messages_costs_a_bounded_share_of_a_core(deployment, measure):
    dep = deployment(FLOODER)
    assert dep.up().returncode == 0
    pid = dep.status()["pid"]
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)  # measuring CPU use over a fixed window: nothing to wait for
    used = (cpu_seconds(pid) - before) / (time.monotonic() - started)
    run, status = dep.try_status()
    measure(f"flooding replica: supervisor CPU {used:.1%} of a core; status took "
            f"{run.seconds * 1000:.0f} ms (CLI start included)")
    assert status is not None, run.describe()
    assert used < 0.25, f"the supervisor used {used:.0%} of a core"
    # 0.3 s with the CLI's own start; the sanitized binaries start and run several times slower.
    limit = 1.0 if os.environ.get("DEPLOYCTL_SANITIZED") == "1" else 0.3
    assert run.seconds < limit, run.describe()
    flooder = replica_by_id(status, "flood.0")
    assert flooder["state"] == "ready" and flooder["dropped_messages"] > 0, flooder


# --- finding 9 ---------------------------------------------------------------------------------

CRASHER = """
name = "@NAME@"

[services.zeta]
command = ["@PYTHON@", "@WORKER@", "ok"]

[services.alpha]
command = ["@PYTHON@", "@WORKER@", "crash-after-ready", "2"]
restart = { backoff = { initial = "60s", max = "60s", jitter = 0.0 } }
"""


def test_a_replica_in_backoff_has_no_health_verdict_and_services_keep_file_order(deployment):
    dep = deployment(CRASHER)
    assert dep.up().returncode == 0
    status = dep.wait_for(lambda s: replica_by_id(s, "alpha.0")["state"] == "backoff",
                          timeout=20, what="alpha.0 in backoff after its second crash")
    alpha = replica_by_id(status, "alpha.0")
    assert alpha["pid"] is None and alpha["health"] == "unknown", alpha
    assert [service["name"] for service in status["services"]] == ["zeta", "alpha"]
    table = dep.deployctl("status", str(dep.spec_path))
    assert table.stdout.index("zeta.0") < table.stdout.index("alpha.0"), table.stdout
