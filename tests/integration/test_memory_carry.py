"""[memory] limits survive the supervisor (docs/upgrade.md, docs/memory.md): after an upgrade in
place, and after a kill -9 of the supervisor and a new `up` that adopts the replicas, a replica
that allocates past memory.max is still killed (reason oom, counted) and one that stays above
memory.restart_above is still recycled; the other replicas keep their pids and serve throughout.

Each runs in the host's mode (cgroup1 where this process's v1 memory cgroup is writable: the
kernel kills, the carried or re-found cgroup holds the limit; else sampling) and in the forced
sampling mode (deployctl samples and kills)."""
import os
import shutil

import pytest

from harness import ClientLoop, deployctl_bin, replica_by_id, wait_until
from test_crash import fully_supervised, kill_supervisor, keeper_pid
from test_memory import HOG, MiB, host_cgroup_mode, own_v1_memory_dir, replica_cgroup_dirs

SPEC = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]
memory = { max = "256MiB" }

# Allocates at 100 MiB/s once told to (go-PID): crosses max within a second.
[services.hog]
command = ["@PYTHON@", "@HOG@", "--rate", "100", "--go-dir", "@DIR@", "--log", "@DIR@/hog.log"]
memory = { max = "64MiB" }
restart = { policy = "on-failure", backoff = { initial = "50ms", max = "200ms", jitter = 0.0 } }
stop = { timeout = "2s" }

# Allocates 40 MiB once told to and holds it: above restart_above, under max.
[services.fat]
command = ["@PYTHON@", "@HOG@", "--rate", "100", "--up-to", "40", "--go-dir", "@DIR@",
           "--log", "@DIR@/fat.log"]
memory = { max = "128MiB", restart_above = "32MiB" }
stop = { timeout = "2s" }
""".replace("@HOG@", HOG)


def start(deployment, forced: str):
    # Memory cgroups are named deployctl-<deployment>-<hash of the state dir>.<replica> below the
    # supervisor's: a name of its own also keeps these apart from test_memory.py's ("itest").
    dep = deployment(SPEC, name="memcarry")
    mode = host_cgroup_mode() if os.geteuid() == 0 and forced != "sampling" else None
    if mode is None:
        dep.env["DEPLOYCTL_MEMORY_MODE"] = "sampling"
    assert dep.up().returncode == 0, dep.diagnostics()
    status = dep.wait_for(lambda s: all(r["state"] == "ready" for sv in s["services"]
                                        for r in sv["replicas"]), 20, "every replica ready")
    assert status["memory_mode"] == (mode or "sampling")
    return dep, mode


def limits_still_apply(dep, mode: str | None, carried: set[int]):
    """hog.0 allocates past max: killed, reason oom, counted; fat.0 stays above restart_above:
    replaced by fat.1 with a surge. The pids in `carried` must be the ones that got the limits."""
    status = dep.status()
    hog, fat = replica_by_id(status, "hog.0"), replica_by_id(status, "fat.0")
    assert {hog["pid"], fat["pid"]} <= carried
    assert hog["memory"]["mode"] == (mode or "sampling") and hog["memory"]["max"] == 64 * MiB
    if mode == "cgroup1":  # the replica is still in its cgroup, which still holds the limit
        [cgroup] = own_v1_memory_dir().glob(f"deployctl-{dep.name}-*.hog.0")
        assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(64 * MiB)
        assert str(hog["pid"]) in (cgroup / "cgroup.procs").read_text().split()
    (dep.dir / f"go-{hog['pid']}").touch()
    status = dep.wait_for(
        lambda s: (r := replica_by_id(s, "hog.0")) and r["last_exit"]
        and r["last_exit"]["reason"] == "oom", 15, "hog.0 killed for memory.max")
    hog = replica_by_id(status, "hog.0")
    assert hog["memory"]["restarts"] == 1 and hog["restarts"] == 1, hog
    assert "was killed for exceeding memory.max" in dep.log_text()

    (dep.dir / f"go-{fat['pid']}").touch()
    status = dep.wait_for(
        lambda s: (r := replica_by_id(s, "fat.1")) and r["state"] == "ready"
        and replica_by_id(s, "fat.0") is None, 20, "fat.1 replacing fat.0")
    assert replica_by_id(status, "fat.1")["memory"]["restarts"] == 1
    assert "stayed above memory.restart_above" in dep.log_text()


@pytest.mark.parametrize("forced", ["host", "sampling"])
def test_limits_survive_an_upgrade_in_place(deployment, measure, forced):
    dep, mode = start(deployment, forced)
    before = dep.replica_pids()
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(deployctl_bin(), new_binary)
    with ClientLoop(dep.port) as loop:
        loop.wait_for_successes(20, 10)
        run = dep.deployctl("upgrade", "--name", dep.name, "--binary", str(new_binary),
                            timeout=40)
        assert run.returncode == 0, run.describe() + dep.diagnostics()
        loop.wait_for_successes(loop.successes + 20, 10)
    measure(f"[memory] upgrade in place ({mode or 'sampling'}): {loop.successes} requests, "
            f"{len(loop.failures)} failed")
    assert loop.failures == [], loop.summary()
    status = dep.status()
    assert status["supervisor"]["upgrades"] == 1
    assert dep.replica_pids(status) == before
    assert "has memory limits" not in dep.log_text()
    limits_still_apply(dep, mode, set(before.values()))
    assert dep.down().returncode == 0
    if mode == "cgroup1":
        assert replica_cgroup_dirs(own_v1_memory_dir(), dep.name) == []


@pytest.mark.parametrize("forced", ["host", "sampling"])
def test_limits_survive_a_crash_of_the_supervisor(deployment, measure, forced):
    dep, mode = start(deployment, forced)
    with ClientLoop(dep.port) as loop:
        loop.wait_for_successes(20, 10)
        pids, keeper = kill_supervisor(dep)
        run = dep.up()
        assert run.returncode == 0 and "adopted" in run.stdout, run.describe()
        dep.wait_for(lambda s: fully_supervised(s, pids), 10, "every replica adopted")
        loop.wait_for_successes(loop.successes + 20, 10)
    measure(f"[memory] kill -9 + adoption ({mode or 'sampling'}): {loop.successes} requests, "
            f"{len(loop.failures)} failed")
    assert loop.failures == [], loop.summary()
    dep.track_pid(keeper_pid(dep), "fd keeper")
    limits_still_apply(dep, mode, set(pids.values()))
    assert dep.down().returncode == 0
    if mode == "cgroup1":
        assert replica_cgroup_dirs(own_v1_memory_dir(), dep.name) == []
