"""Replicas that misbehave: protocol violations, stdout floods, ignored SIGTERM. The supervisor
must contain each one without losing output or its own responsiveness."""
import re
import time

import pytest

from harness import (ClientLoop, all_ready, assert_gone, is_alive, replaced, replica_by_id,
                     worker_runs)

PROTOCOL_BREAKER = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "MODE", "--once", "@DIR@/misbehaved", "--events", "@DIR@/events"]
replicas = 1

[services.web.stop]
timeout = "1s"
"""

FLOOD_AND_SERVER = """
name = "@NAME@"

[services.flood]
command = ["@PYTHON@", "@WORKER@", "flood-stdout"]
replicas = 1

[services.flood.stop]
timeout = "2s"

[services.api]
command = @SERVER_COMMAND@
replicas = 1
listen = ["127.0.0.1:@PORT@"]
"""

IGNORES_SIGTERM = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ignore-term"]
replicas = 2

[services.web.stop]
timeout = "1s"
"""

READ_RATE = 1 << 20  # bytes/s a replica's output is read at, at most (docs/cli.md)
READ_BURST = 1 << 20
RATE_SLACK = 1.25
FLOOD_WINDOW = 3.0  # seconds
FLOOD_LINE = re.compile(r"^flood\.0 \| flood (\d+)$", re.M)


@pytest.mark.parametrize("mode", ["garbage", "oversized"])
def test_protocol_violation_gets_the_replica_replaced(deployment, mode):
    dep = deployment(PROTOCOL_BREAKER.replace("MODE", mode))
    assert dep.up().returncode == 0
    culprit = worker_runs(dep.dir / "events")[0]["pid"]  # the run that misbehaves

    status = dep.wait_for(lambda s: replaced(s, "web.0", culprit), timeout=10,
                          what="web.0 replaced after breaking the protocol")
    assert (dep.dir / "misbehaved").exists(), "the worker never misbehaved"
    replica = replica_by_id(status, "web.0")
    assert replica["last_exit"]["reason"] == "protocol", replica
    assert replica["restarts"] == 1, replica
    assert_gone([culprit])


def flood_numbers(dep) -> list[int]:
    """The numbers of the complete `flood.0 | flood N` lines shown so far."""
    stdout, _ = dep.foreground_output()
    complete = stdout[:stdout.rfind("\n") + 1]
    return [int(number) for number in FLOOD_LINE.findall(complete)]


def test_flooding_replica_is_throttled_without_losing_lines_or_stalling_others(
        deployment, measure):
    dep = deployment(FLOOD_AND_SERVER)
    started = time.monotonic()
    dep.up_foreground()
    dep.wait_for(lambda s: all_ready(s, 2), timeout=15, what="flood.0 and api.0 ready")

    status_seconds = []
    with ClientLoop(dep.port, paths=("/whoami",)) as api_client:
        window_end = time.monotonic() + FLOOD_WINDOW
        while time.monotonic() < window_end:
            asked = time.monotonic()
            dep.status()
            status_seconds.append(time.monotonic() - asked)
            time.sleep(0.2)  # pacing the samples, not waiting for anything
        numbers = flood_numbers(dep)
        flood_seconds = time.monotonic() - started  # an upper bound on how long it flooded

    shown = sum(len(f"flood {n}\n") for n in numbers)
    measure(f"flood: {shown / 2**20:.2f} MiB shown in {flood_seconds:.1f}s since up; status "
            f"max {max(status_seconds) * 1000:.0f} ms; api {api_client.successes} requests ok")
    bound = (READ_BURST + READ_RATE * flood_seconds) * RATE_SLACK
    assert shown <= bound, f"{shown} bytes shown in {flood_seconds:.1f}s: not throttled"
    assert shown >= 256 * 1024, f"only {shown} bytes shown in {flood_seconds:.1f}s"
    assert numbers == list(range(len(numbers))), "flood lines lost or reordered"
    assert max(status_seconds) < 1.0, f"status took {max(status_seconds):.2f}s during the flood"
    assert api_client.failures == [] and api_client.successes >= 10, api_client.summary()


def test_replica_ignoring_sigterm_is_killed_after_stop_timeout(deployment, measure):
    dep = deployment(IGNORES_SIGTERM)
    assert dep.up().returncode == 0
    processes = [dep.supervisor_pid, *dep.replica_pids().values()]
    assert all(is_alive(pid) for pid in processes)

    run = dep.down(timeout=20)
    assert run.returncode == 0, run.describe()
    measure(f"down with SIGTERM ignored, stop.timeout 1s: {run.seconds:.2f}s")
    # SIGTERM, then SIGKILL once stop.timeout (1s) has passed: not sooner, not much later.
    assert 0.9 <= run.seconds <= 1.0 + 1.5, run.describe()
    assert_gone(processes)
    assert dep.leftovers() == {}
