"""Replica failures: replacement of killed and frozen replicas, fail-fast start failures, and
the restart backoff up to crash-loop."""
import os
import signal
import time

import pytest

from harness import (ClientLoop, exit_lines, proc_info, process_state, replaced, replica_by_id,
                     wait_until, worker_runs)

ONE_SERVER = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 1
listen = ["127.0.0.1:@PORT@"]
"""

FREEZABLE = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 1

[services.web.health]
kind = "control"
interval = "200ms"
timeout = "100ms"
failures = 3

[services.web.stop]
timeout = "1s"
"""

FAILS_BEFORE_READY = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "exit-at-once", "3"]
replicas = 1
"""

CANNOT_EXECUTE = """
name = "@NAME@"

[services.web]
command = ["@DIR@/PROGRAM"]
replicas = 1
"""

CRASHES_AFTER_READY = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "crash-after-ready", "0.2", "--events", "@DIR@/events"]
replicas = 1

[services.web.restart]
policy = "always"
backoff = { initial = "250ms", max = "2s", reset_after = "60s", jitter = 0.0 }
crash_loop = { restarts = 4, within = "60s" }
"""

# Delays before restarts 1..4 of a replica that keeps crashing: the first is immediate, then
# `initial`, doubling (jitter 0). `initial` is 250ms, not 100ms, so that "immediate" and
# "initial" stay apart on a noisy machine.
EXPECTED_RESTART_DELAYS = [0.0, 0.25, 0.5, 1.0]
TIMER_SLACK_EARLY = 0.02  # clock tick granularity of the fork time
TIMER_SLACK_LATE = 0.5  # a busy 2-core machine


def test_killed_replica_is_replaced_while_the_port_never_refuses(deployment, measure):
    dep = deployment(ONE_SERVER)
    assert dep.up().returncode == 0
    old = dep.replica_pids()["web.0"]
    old_start = proc_info(old).start_ticks

    with ClientLoop(dep.port, paths=("/whoami",), timeout=5.0) as client:
        client.wait_for_successes(20, 10)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        status = dep.wait_for(lambda s: replaced(s, "web.0", old), timeout=10,
                              what="web.0 replaced by a new ready process")
        kill_to_ready = time.monotonic() - killed_at
        client.wait_for_successes(client.successes + 20, 10)
    measure(f"kill -9 -> new replica ready: {kill_to_ready * 1000:.0f} ms")

    failures = client.failure_counts()
    assert failures["refused"] == 0, client.summary()
    # One sequential client has at most one connection in the killed process.
    assert failures["reset"] <= 1, client.summary()
    assert failures["timeout"] == failures["status"] == failures["other"] == 0, client.summary()

    replica = replica_by_id(status, "web.0")
    assert replica["restarts"] == 1, replica
    assert replica["last_exit"]["signal"] == 9 and replica["last_exit"]["code"] is None, replica
    assert replica["last_exit"]["reason"] == "signal", replica
    info = proc_info(old)
    assert info is None or info.start_ticks != old_start, "the killed replica was not reaped"
    wait_until(lambda: ("web.0", old, "signal 9 (SIGKILL)") in exit_lines(dep.log_text()), 5,
               f"the log line 'web.0 (pid {old}) exited: signal 9 (SIGKILL)'")


def test_frozen_replica_is_replaced_after_failing_its_health_checks(deployment, measure):
    dep = deployment(FREEZABLE)
    assert dep.up().returncode == 0
    old = dep.replica_pids()["web.0"]
    dep.wait_for(lambda s: replica_by_id(s, "web.0")["health"] == "healthy", timeout=5,
                 what="web.0 healthy (a PONG answered)")

    def noticed(status):
        replica = replica_by_id(status, "web.0")
        return (replica["pid"] != old or replica["state"] == "unhealthy"
                or replica["health"] == "unhealthy")

    stopped_at = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        dep.wait_for(noticed, timeout=8, what="web.0 found unhealthy")
        noticed_after = time.monotonic() - stopped_at
        status = dep.wait_for(lambda s: replaced(s, "web.0", old), timeout=8,
                              what="web.0 replaced by a new ready process")
        replaced_after = time.monotonic() - stopped_at
    finally:
        if process_state(old) in ("T", "t"):
            os.kill(old, signal.SIGCONT)

    measure(f"SIGSTOP -> found unhealthy: {noticed_after * 1000:.0f} ms, "
            f"-> replacement ready: {replaced_after * 1000:.0f} ms")
    # 3 missed pings, 200ms apart, each given 100ms: about 0.6s.
    assert 0.4 <= noticed_after <= 4.0, f"unhealthy after {noticed_after:.2f}s"
    replica = replica_by_id(status, "web.0")
    assert replica["last_exit"]["reason"] == "health", replica
    assert replica["restarts"] == 1, replica


def test_replica_failing_before_ready_makes_up_fail_fast_with_its_stderr(deployment):
    dep = deployment(FAILS_BEFORE_READY)
    run = dep.up(timeout=20)
    assert run.returncode == 1, run.describe()
    assert run.seconds < 5, run.describe()
    assert "exit-at-once: failing before READY on purpose" in run.stderr, run.describe()
    assert "web.0" in run.stderr, run.describe()
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


def make_program(directory, name: str, kind: str) -> None:
    """`missing`: nothing at that path; `not-executable`: a script without any x bit."""
    if kind == "not-executable":
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o644)


@pytest.mark.parametrize("kind, reason", [("missing", "No such file or directory"),
                                          ("not-executable", "Permission denied")])
def test_command_that_cannot_be_executed_fails_up_with_the_reason(deployment, kind, reason):
    program = f"{kind}-program"
    dep = deployment(CANNOT_EXECUTE.replace("PROGRAM", program))
    make_program(dep.dir, program, kind)

    run = dep.up(timeout=20)
    assert run.returncode == 1, run.describe()
    assert run.seconds < 5, run.describe()
    assert "cannot execute" in run.stderr and program in run.stderr, run.describe()
    assert reason in run.stderr, run.describe()
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


def test_crashing_replica_restarts_with_growing_delays_then_enters_crash_loop(deployment, measure):
    dep = deployment(CRASHES_AFTER_READY)
    assert dep.up().returncode == 0
    events = dep.dir / "events"
    states_seen = set()

    def crash_loop_after_enough_restarts(status):
        states_seen.add(replica_by_id(status, "web.0")["state"])
        return "crash-loop" in states_seen and len(worker_runs(events)) >= 5

    try:
        status = dep.wait_for(crash_loop_after_enough_restarts, timeout=20,
                              what="state crash-loop and 5 runs of web.0")
    except AssertionError as error:
        raise AssertionError(f"{error}\nstates seen: {states_seen}") from None

    runs = worker_runs(events)
    gaps = [later["start"] - earlier["exit"] for earlier, later in zip(runs, runs[1:])]
    description = f"exit->restart gaps {[round(g, 3) for g in gaps]}, expected " \
                  f"{EXPECTED_RESTART_DELAYS} (+ up to {TIMER_SLACK_LATE}s)"
    measure(description)
    for gap, expected in zip(gaps, EXPECTED_RESTART_DELAYS):
        assert expected - TIMER_SLACK_EARLY <= gap <= expected + TIMER_SLACK_LATE, description
    assert gaps[0] < EXPECTED_RESTART_DELAYS[1] - 0.05, f"first restart waited: {description}"

    replica = replica_by_id(status, "web.0")
    assert replica["restarts"] >= 4, replica
    last_exit = replica["last_exit"]
    assert (last_exit["reason"], last_exit["code"], last_exit["signal"]) == ("exit", 1, None)
    assert any("crash-after-ready: crashing on purpose" in line for line in last_exit["stderr"])
    expected_lines = {("web.0", run["pid"], "code 1") for run in runs[:4]}
    wait_until(lambda: expected_lines <= set(exit_lines(dep.log_text())), 5,
               f"log lines 'web.0 (pid P) exited: code 1' for {[run['pid'] for run in runs[:4]]}")
