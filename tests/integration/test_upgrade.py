"""Upgrade in place (docs/upgrade.md): `deployctl upgrade` re-executes the supervisor with a new
binary, same pid, carrying its state and fds; replicas keep running and serving. A binary that
does not run, or that cannot read the state, leaves the old supervisor running."""
import http.client
import os
import re
import shutil
import signal
import threading
import time

from harness import (ClientLoop, all_ready, all_replicas, client_loops, deploy_example,
                     deployctl_bin, failures_by_kind, is_alive, replaced, server_bin,
                     service_by_name, summaries, wait_until)
from test_reuseport import (DEPLOY_SERVER, answering_replicas, down_leaves_nothing, listeners,
                            roll_and_scale_under_load)

SPEC = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 4
listen = ["127.0.0.1:@PORT@"]

# Prints a numbered line every 10 ms: the log must hold every number, across the exec.
[services.ticker]
command = ["/bin/sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.01; done"]
health = { kind = "none" }
"""


class KeepAliveLoop:
    """GETs on ONE persistent connection (reconnecting after a failure), in a thread."""

    def __init__(self, port: int, max_requests: int = 50_000, duration: float = 60.0):
        self.port, self.max_requests, self.duration = port, max_requests, duration
        self.successes, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()

    def _run(self):
        deadline = time.monotonic() + self.duration
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() >= deadline:
                break
            try:
                connection.request("GET", "/whoami")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.successes += 1
                else:
                    self.failures.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self._stop.wait(0.005)
        connection.close()


def replica_facts(status: dict) -> dict:
    return {r["id"]: (r["pid"], r["restarts"], r["uptime_ms"]) for r in all_replicas(status)}


def tick_numbers(dep) -> list[int]:
    return [int(n) for n in re.findall(r"\| tick (\d+)$", dep.service_log("ticker"), re.M)]


def upgrade(dep, binary: str):
    return dep.deployctl("upgrade", "--name", dep.name, "--binary", binary, timeout=40)


def upgrade_under(dep, loops) -> tuple[dict, dict]:
    """Upgrades `dep` in place to a copy of the binary while `loops` run; waits for 20 more
    successes of each. Returns the status after it and the loops' failures by kind so far."""
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(deployctl_bin(), new_binary)
    run = upgrade(dep, str(new_binary))
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    for loop in loops:
        loop.wait_for_successes(loop.successes + 20, 10)
    after = dep.status()
    assert after["supervisor"]["executable"] == str(new_binary)
    return after, failures_by_kind(loops)


def test_upgrade_in_place_under_load(deployment, measure):
    dep = deployment(SPEC)
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: service_by_name(s, "web")["ready"] == 4, what="4 ready replicas")
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(deployctl_bin(), new_binary)
    before = dep.status()
    supervisor = before["pid"]
    assert before["supervisor"]["upgrades"] == 0

    with ClientLoop(dep.port) as fresh, KeepAliveLoop(dep.port) as kept:
        fresh.wait_for_successes(20, 10)
        wait_until(lambda: kept.successes >= 20, 10, "keep-alive requests")
        started = time.monotonic()
        run = upgrade(dep, str(new_binary))
        took = time.monotonic() - started
        assert run.returncode == 0, run.describe() + dep.diagnostics()
        assert "upgraded in place" in run.stdout and str(new_binary) in run.stdout, run.describe()
        fresh.wait_for_successes(fresh.successes + 20, 10)
        ok = kept.successes
        wait_until(lambda: kept.successes >= ok + 20, 10, "keep-alive requests after")
    measure(f"upgrade in place: {took * 1000:.0f} ms (CLI round trip), "
            f"{fresh.successes} new-connection + {kept.successes} keep-alive requests, "
            f"{len(fresh.failures)} + {len(kept.failures)} failed")
    assert fresh.failures == [], fresh.summary()
    assert kept.failures == [], kept.failures[:3]

    after = dep.status()
    assert after["pid"] == supervisor
    assert after["supervisor"]["upgrades"] == 1
    assert after["supervisor"]["executable"] == str(new_binary)
    assert after["supervisor"]["version"] == before["supervisor"]["version"]
    old, new = replica_facts(before), replica_facts(after)
    assert old.keys() == new.keys()
    for rid, (pid, restarts, uptime) in old.items():
        assert new[rid][0] == pid, f"{rid} was restarted"
        assert new[rid][1] == restarts, f"{rid}: restart counter reset"
        assert new[rid][2] >= uptime, f"{rid}: uptime went back"

    # Every numbered line reached the log: none lost or split by the exec.
    wait_until(lambda: len(tick_numbers(dep)) > 50, 10, "ticker lines")
    ticks = tick_numbers(dep)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "a gap in the ticker's lines"

    # Full supervision under the new binary: a killed replica is restarted and counted.
    victim = next(r for r in all_replicas(after) if r["id"] == "web.1")
    os.kill(victim["pid"], signal.SIGKILL)
    status = dep.wait_for(lambda s: replaced(s, "web.1", victim["pid"]), what="web.1 restarted")
    assert next(r for r in all_replicas(status) if r["id"] == "web.1")["restarts"] == \
        victim["restarts"] + 1

    # SIGUSR2: the same, to the binary at the executable's path.
    dep.wait_for(lambda s: all(r["state"] == "ready" for r in all_replicas(s)), what="all ready")
    os.kill(supervisor, signal.SIGUSR2)
    status = dep.wait_for(lambda s: s["supervisor"]["upgrades"] == 2, what="the SIGUSR2 upgrade")
    assert status["pid"] == supervisor


def test_upgrade_carries_per_replica_sockets_and_their_steering(deployment, measure):
    """Each replica's own SO_REUSEPORT socket and the kernel group's order cross the exec: the
    same pids serve with 0 failed new connections, and the new binary then steers (a rolling
    restart, scale down and up) with 0 failed requests."""
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()), name="uppr")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 4), what="4 ready replicas")
    before = dep.status()
    with client_loops(dep.port, [("/whoami",)] * 2) as loops:
        after, upgraded_failures = upgrade_under(dep, loops)
        restart = roll_and_scale_under_load(dep, loops)
    assert upgraded_failures == {}, summaries(loops)
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert after["pid"] == before["pid"] and after["supervisor"]["upgrades"] == 1
    assert dep.replica_pids(after) == dep.replica_pids(before)
    assert "queued connection(s)" not in dep.log_text(), dep.diagnostics()
    measure(f"per-replica upgrade in place, then rolling restart {restart:.1f} s and scale "
            f"4->2->4: {sum(loop.successes for loop in loops)} requests, 0 failed")
    ids = set(dep.replica_pids())  # a rollout renames replicas (web.4...)
    assert len(ids) == 4 and answering_replicas(dep.port, ids) == ids
    assert listeners(dep.port) == 4
    down_leaves_nothing(dep)


def test_upgrade_of_the_quick_start_under_load(deployment, measure):
    """What users run: the quick start (FastAPI + uvicorn x4 on per-replica sockets, memory
    limits, a pre-start step) upgraded in place under client loops, then rolled by the new
    binary: 0 failed requests, the same uvicorn pids across the exec."""
    dep = deploy_example(deployment, "quickstart.toml", {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"'})
    assert dep.up(timeout=90).returncode == 0
    dep.wait_for(lambda s: all_ready(s, 4), 60, "4 ready uvicorn replicas")
    before = dep.status()
    with client_loops(dep.port, [("/",)] * 2) as loops:
        for loop in loops:
            loop.wait_for_successes(20, 10)
        after, upgraded_failures = upgrade_under(dep, loops)
        restart = dep.deployctl("restart", "web", "--name", dep.name, timeout=120)
        assert restart.returncode == 0, restart.describe()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 20, 20)
    assert upgraded_failures == {}, summaries(loops)
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert after["pid"] == before["pid"] and after["supervisor"]["upgrades"] == 1
    assert dep.replica_pids(after) == dep.replica_pids(before)
    assert after["memory_mode"] == before["memory_mode"]
    measure(f"quick start (FastAPI/uvicorn x4, per-replica, [memory]) upgrade in place + rolling "
            f"restart: {sum(loop.successes for loop in loops)} requests, 0 failed")
    down_leaves_nothing(dep)


def test_failed_upgrades_leave_the_old_supervisor_running(deployment):
    dep = deployment(SPEC)
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: service_by_name(s, "web")["ready"] == 4, what="4 ready replicas")
    rejecting = dep.dir / "rejects-state"
    rejecting.write_text("#!/bin/sh\n"
                         "if [ \"$1\" = --version ]; then echo 'deployctl 9.9'; exit 0; fi\n"
                         "echo 'state format 1 is not one this binary reads' >&2; exit 1\n")
    rejecting.chmod(0o755)
    before = dep.status()
    cases = [("/bin/false", "--version failed"),
             (str(rejecting), "cannot take over this supervisor's state"),
             (str(dep.dir / "missing"), "not an executable")]
    with ClientLoop(dep.port) as loop:
        loop.wait_for_successes(5, 10)
        for failures, (binary, message) in enumerate(cases, start=1):
            run = upgrade(dep, binary)
            assert run.returncode == 1, run.describe()
            assert message in run.stderr, run.describe()
            status = dep.status()
            assert status["supervisor"]["upgrade_failures"] == failures
            assert status["supervisor"]["upgrades"] == 0
            assert message in status["supervisor"]["upgrade_error"]
        loop.wait_for_successes(loop.successes + 5, 10)
    assert loop.failures == [], loop.summary()
    after = dep.status()
    assert after["pid"] == before["pid"]
    assert {k: v[0] for k, v in replica_facts(after).items()} == \
        {k: v[0] for k, v in replica_facts(before).items()}


FLAKY = """
name = "@NAME@"

# Runs 0.5 s, then fails and waits 20 s before its restart: in backoff, not ready.
[services.flaky]
command = ["/bin/sh", "-c", "sleep 0.5; exit 3"]
restart = { backoff = { initial = "20s", max = "20s", jitter = 0 } }
health = { kind = "none" }
"""


def test_upgrade_is_refused_while_a_replica_is_not_ready(deployment):
    dep = deployment(FLAKY)
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_replicas(s)[0]["state"] == "backoff", what="flaky.0 in backoff")
    run = upgrade(dep, deployctl_bin())
    assert run.returncode == 6, run.describe()
    assert "flaky.0 is backoff; try again" in run.stderr, run.describe()
    assert dep.status()["supervisor"]["upgrades"] == 0


def test_a_replica_that_exits_during_the_exec_is_reaped_and_restarted(deployment):
    dep = deployment(SPEC)
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: service_by_name(s, "web")["ready"] == 4, what="4 ready replicas")
    victim = next(r for r in all_replicas(dep.status()) if r["id"] == "web.2")
    # The "new binary" kills web.2 in the middle of the exec (already in the supervisor's
    # process, before the real binary resumes), using only shell builtins: no child of the
    # shell may reap the victim in its place.
    wrapper = dep.dir / "kills-during-exec"
    wrapper.write_text("#!/bin/sh\n"
                       f"if [ \"$1\" = resume ]; then kill -9 {victim['pid']}; fi\n"
                       f"exec {deployctl_bin()} \"$@\"\n")
    wrapper.chmod(0o755)
    run = upgrade(dep, str(wrapper))
    assert run.returncode == 0, run.describe() + dep.diagnostics()
    status = dep.wait_for(lambda s: replaced(s, "web.2", victim["pid"]), what="web.2 restarted")
    web2 = next(r for r in all_replicas(status) if r["id"] == "web.2")
    assert web2["restarts"] == victim["restarts"] + 1
    assert web2["last_exit"]["signal"] == 9
    assert status["supervisor"]["upgrades"] == 1
