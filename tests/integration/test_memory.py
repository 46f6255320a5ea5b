"""Memory limits: the hard limit kills a real memory hog (reason `oom`, restarted by policy) in
the host's cgroup mode, in the sampling mode (forced) and against a fake cgroup v2 tree; the
soft limit recycles a leaking deploy-server with a surge and no failed request; a replica
under its limits is never touched; no cgroup is left after `down`.

This host has cgroup v1 (hybrid): cgroup v2 runs against a fake tree in a temp dir
(DEPLOYCTL_CGROUP_ROOT), which checks the layout and files deployctl writes, and the OOM and
usage figures a test writes in for the kernel; it cannot check the kernel's enforcement.
"""
import os
import select
import signal
import statistics
import time
from pathlib import Path

import pytest

from harness import ClientLoop, PYTHON, replica_by_id, server_bin, source_dir, toml_array, \
    wait_until

MiB = 1024 * 1024
HOG = str(source_dir() / "tests" / "workers" / "memory_hog.py")
KILLS_TO_MEASURE = 5

HOG_SPEC = """
name = "@NAME@"

[services.hog]
command = ["@PYTHON@", "{hog}", "--rate", "{rate}", "--go-dir", "@DIR@", "--log", "@DIR@/hog.log"{extra}]
replicas = 1

[services.hog.memory]
{memory}

[services.hog.restart]
policy = "on-failure"
backoff = {{ initial = "50ms", max = "200ms", reset_after = "60s", jitter = 0.0 }}
crash_loop = {{ restarts = 100, within = "60s" }}

[services.hog.stop]
timeout = "2s"
"""


def hog_spec(memory: str, rate: int = 100, up_to: int | None = None) -> str:
    extra = f', "--up-to", "{up_to}"' if up_to else ""
    return HOG_SPEC.format(hog=HOG, rate=rate, extra=extra, memory=memory)


def host_cgroup_mode() -> str | None:
    """cgroup1 when this process's v1 memory cgroup is writable (as on the CI machine)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if os.access(directory, os.W_OK) and (directory / "memory.limit_in_bytes").exists():
                return "cgroup1"
    return None


def replica_cgroup_dirs(parent: Path, name: str) -> list[Path]:
    """The memory cgroups of deployment `name`: deployctl-<name>-<hash of its state dir>.<id>."""
    return sorted(parent.glob(f"deployctl-{name}-*.*")) if parent.exists() else []


def own_v1_memory_dir() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    raise AssertionError("no v1 memory cgroup")


def wait_exit(pid: int, timeout: float) -> float:
    """Blocks until `pid` (not our child) exits; returns time.monotonic() right after."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(timeout * 1000), f"pid {pid} still alive after {timeout}s"
        return time.monotonic()
    finally:
        os.close(fd)


def hog_samples(log: Path, pid: int) -> list[tuple[float, int]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(t), int(b)) for t, p, b in (line.split() for line in lines) if int(p) == pid]


def kill_latencies(dep, limit: int, runs: int) -> list[float]:
    """Lets `runs` successive hog processes cross `limit`; for each, the time from the first
    sample at or above the limit (or, if it was killed before it could log one, from its last
    sample: an upper bound) to its exit."""
    latencies, seen = [], set()
    for _ in range(runs):
        status = dep.wait_for(
            lambda s: (r := replica_by_id(s, "hog.0")) and r["pid"] not in (None, *seen)
            and r["state"] == "ready", timeout=20, what="a new hog run")
        pid = replica_by_id(status, "hog.0")["pid"]
        seen.add(pid)
        (dep.dir / f"go-{pid}").touch()
        exited = wait_exit(pid, timeout=20)
        samples = hog_samples(dep.dir / "hog.log", pid)
        assert samples, f"hog {pid} logged nothing"
        crossing = next((t for t, b in samples if b >= limit), samples[-1][0])
        latencies.append(exited - crossing)
    return latencies


def assert_oom_exit(dep) -> dict:
    status = dep.wait_for(
        lambda s: (r := replica_by_id(s, "hog.0")) and r["last_exit"]
        and r["last_exit"]["reason"] == "oom", timeout=10, what="last_exit.reason oom")
    replica = replica_by_id(status, "hog.0")
    assert replica["last_exit"]["signal"] == signal.SIGKILL, replica
    assert replica["memory"]["restarts"] >= 1, replica
    assert replica["restarts"] >= 1, replica
    return replica


@pytest.mark.skipif(os.geteuid() != 0 or host_cgroup_mode() is None,
                    reason="needs root and a writable cgroup v1 memory controller")
def test_hard_limit_kills_the_hog_in_the_hosts_cgroup_and_it_restarts(deployment, measure):
    dep = deployment(hog_spec('max = "64MiB"'))
    assert dep.up().returncode == 0, dep.diagnostics()
    status = dep.status()
    assert status["memory_mode"] == "cgroup1"
    assert "memory limits: cgroup1" in dep.log_text()
    replica = replica_by_id(status, "hog.0")
    assert replica["memory"]["mode"] == "cgroup1" and replica["memory"]["max"] == 64 * MiB
    [cgroup] = own_v1_memory_dir().glob(f"deployctl-{dep.name}-*.hog.0")
    assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(64 * MiB)
    assert str(replica["pid"]) in (cgroup / "cgroup.procs").read_text().split()
    table = dep.deployctl("status", str(dep.spec_path)).stdout
    assert "memory limits: cgroup1" in table and "/64.0M" in table, table

    latencies = kill_latencies(dep, 64 * MiB, KILLS_TO_MEASURE)
    assert_oom_exit(dep)
    measure(f"cgroup1: crossing 64 MiB -> hog killed (kernel OOM), {len(latencies)} kills: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
            f"(upper bounds: from the hog's last sample)")
    assert statistics.median(latencies) < 1.0

    assert dep.down().returncode == 0
    assert replica_cgroup_dirs(own_v1_memory_dir(), dep.name) == []


@pytest.mark.skipif(os.geteuid() != 0 or host_cgroup_mode() is None,
                    reason="needs root and a writable cgroup v1 memory controller")
def test_two_deployments_of_one_name_keep_their_memory_cgroups_apart(deployment):
    """Same name, different runtime dirs: each replica in a cgroup of its own deployment, and
    the first one's `down` leaves the second one's cgroup, limit and replica as they were."""
    spec = hog_spec('max = "64MiB"')
    first, second = deployment(spec, name="twin"), deployment(spec, name="twin")
    assert first.dir != second.dir
    pids = []
    for dep in (first, second):
        assert dep.up().returncode == 0, dep.diagnostics()
        pids.append(replica_by_id(dep.status(), "hog.0")["pid"])
    cgroups = replica_cgroup_dirs(own_v1_memory_dir(), "twin")
    assert len(cgroups) == 2, cgroups
    owner = {cgroup: (cgroup / "cgroup.procs").read_text().split() for cgroup in cgroups}
    assert sorted(p for procs in owner.values() for p in procs) == sorted(map(str, pids))
    assert first.down().returncode == 0
    [left] = replica_cgroup_dirs(own_v1_memory_dir(), "twin")
    assert (left / "cgroup.procs").read_text().split() == [str(pids[1])]
    assert (left / "memory.limit_in_bytes").read_text().strip() == str(64 * MiB)
    assert replica_by_id(second.status(), "hog.0")["pid"] == pids[1]
    assert second.down().returncode == 0
    assert replica_cgroup_dirs(own_v1_memory_dir(), "twin") == []


def test_hard_limit_in_the_forced_sampling_mode(deployment, measure):
    dep = deployment(hog_spec('max = "64MiB"'))
    dep.env["DEPLOYCTL_MEMORY_MODE"] = "sampling"
    assert dep.up().returncode == 0, dep.diagnostics()
    status = dep.status()
    assert status["memory_mode"] == "sampling"
    assert "memory limits: sampling (forced by DEPLOYCTL_MEMORY_MODE)" in dep.log_text()

    latencies = kill_latencies(dep, 64 * MiB, KILLS_TO_MEASURE)
    replica = assert_oom_exit(dep)
    assert replica["memory"]["mode"] == "sampling"
    assert "above memory.max 64.0MiB: SIGKILL" in dep.log_text()
    measure(f"sampling (100 ms): PSS crossing 64 MiB -> hog killed, {len(latencies)} kills: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert statistics.median(latencies) < 2.0


def test_a_replica_under_its_limits_is_never_touched(deployment):
    dep = deployment(hog_spec('max = "96MiB"\nrestart_above = "64MiB"', up_to=24))
    assert dep.up().returncode == 0, dep.diagnostics()
    pid = replica_by_id(dep.status(), "hog.0")["pid"]
    (dep.dir / f"go-{pid}").touch()
    wait_until(lambda: any(b >= 24 * MiB for _, b in hog_samples(dep.dir / "hog.log", pid)),
               10, "the hog to reach 24 MiB")
    observe_until = time.monotonic() + 2.0  # eight cgroup samples, twice the soft window
    while time.monotonic() < observe_until:
        replica = replica_by_id(dep.status(), "hog.0")
        assert replica["pid"] == pid and replica["restarts"] == 0, replica
        assert replica["memory"]["restarts"] == 0 and not replica["memory"]["recycling"]
        assert 20 * MiB < replica["memory"]["bytes"] < 64 * MiB, replica["memory"]
        time.sleep(0.2)
    assert "restart_above" not in dep.log_text().replace("memory.restart_above =", "")


LEAKY_SERVER = """
name = "@NAME@"

[services.web]
command = {command}
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.memory]
max = "256MiB"
restart_above = "24MiB"

[services.web.stop]
timeout = "5s"
"""


@pytest.mark.parametrize("mode", ["host", "sampling"])
def test_soft_limit_recycles_a_leaking_server_with_no_failed_request(deployment, measure, mode):
    command = toml_array([server_bin(), "--debug-leak-per-request", str(256 * 1024)])
    dep = deployment(LEAKY_SERVER.format(command=command))
    if mode == "sampling":
        dep.env["DEPLOYCTL_MEMORY_MODE"] = "sampling"
    assert dep.up().returncode == 0, dep.diagnostics()
    first = dep.replica_pids()

    with ClientLoop(dep.port, duration=60.0, pause=0.002) as loop:
        def recycled_twice(status):
            live = [r for s in status["services"] for r in s["replicas"] if r["pid"]]
            return sum(1 for r in live if r["memory"]["restarts"] >= 1) >= 2 and \
                not set(first.values()) & {r["pid"] for r in live}
        dep.wait_for(recycled_twice, timeout=45, what="both first replicas recycled")
        loop.stop()
    recycles = dep.log_text().count("stayed above memory.restart_above")
    measure(f"soft limit ({mode}): {recycles} recycles under a client loop: "
            f"{loop.successes} requests ok, {len(loop.failures)} failed")
    assert loop.failures == [], loop.summary()
    assert recycles >= 2
    status = dep.wait_for(lambda s: s["services"][0]["rollout"] != "running", timeout=20,
                          what="the recycling rollout to settle")
    assert all(r["last_exit"] is None or r["last_exit"]["reason"] != "oom"
               for r in status["services"][0]["replicas"])


def test_cgroup2_on_a_fake_tree_layout_oom_and_soft_limit(deployment, tmp_path):
    """A fake delegated cgroup v2 directory: deployctl's own writes are checked, and the test
    plays the kernel by writing memory.events and memory.current."""
    tree = tmp_path / "cg"
    tree.mkdir()
    (tree / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tree / "cgroup.subtree_control").write_text("")
    (tree / "cgroup.procs").write_text("")
    dep = deployment(hog_spec('max = "64MiB"\nrestart_above = "32MiB"', up_to=1))
    dep.env.update(DEPLOYCTL_MEMORY_MODE="cgroup2", DEPLOYCTL_CGROUP_ROOT=str(tree))
    assert dep.up().returncode == 0, dep.diagnostics()
    assert dep.status()["memory_mode"] == "cgroup2"
    assert (tree / "supervisor" / "cgroup.procs").read_text() == "0"
    assert (tree / "cgroup.subtree_control").read_text() == "+memory"
    [replica_dir] = tree.glob(f"deployctl-{dep.name}-*.hog.0")
    assert (replica_dir / "memory.max").read_text() == str(64 * MiB)
    assert (replica_dir / "cgroup.procs").read_text() == "0"  # written by the child before exec

    # The kernel's OOM kill: the counter moves, the replica dies of SIGKILL.
    pid = replica_by_id(dep.status(), "hog.0")["pid"]
    (replica_dir / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    os.kill(pid, signal.SIGKILL)
    replica = assert_oom_exit(dep)
    assert replica["memory"]["restarts"] == 1

    # memory.current above restart_above for the window: a surge replacement.
    dep.wait_for(lambda s: (r := replica_by_id(s, "hog.0")) and r["state"] == "ready"
                 and r["pid"] not in (None, pid), timeout=10, what="hog.0 restarted")
    wait_until(lambda: (replica_dir / "memory.max").exists(), 5, "the new run's cgroup")
    (replica_dir / "memory.current").write_text(str(40 * MiB))
    status = dep.wait_for(
        lambda s: (r := replica_by_id(s, "hog.1")) and r["state"] == "ready"
        and replica_by_id(s, "hog.0") is None, timeout=15, what="hog.1 replacing hog.0")
    assert replica_by_id(status, "hog.1")["memory"]["restarts"] == 2  # 1 OOM + 1 recycle

    assert dep.down().returncode == 0
    assert replica_cgroup_dirs(tree, dep.name) == []
    assert not (tree / "supervisor").exists()
    assert (tree / "cgroup.subtree_control").read_text() == "-memory"
