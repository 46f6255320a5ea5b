"""Issue 11 finding 4: every replica runs in a cgroup of its own whenever the supervisor can
create cgroups (cgroup v2 writable: root here, systemd's Delegate=yes), so a restart or a stop
kills its whole tree, descendants that escaped its process group with setsid and a fork
included. Real processes and the host's real cgroup v2 hierarchy; where it is not writable
(an unprivileged CI runner) the tests that need it are skipped, and the log says why."""
import os
import platform
import shutil
import signal

import pytest

from harness import assert_gone, deployctl_bin, is_alive, replaced, wait_until

# The replica starts a detached `sleep` (a new session, its parent gone: it is reparented to the
# supervisor, outside the replica's process group), then crashes once @DIR@/crash appears.
ESCAPER = """
name = "@NAME@"

[services.web]
command = ["/bin/sh", "-c", "setsid /bin/sh -c '/bin/sleep 600 & echo $! >> @DIR@/detached'; while [ ! -e @DIR@/crash ]; do /bin/sleep 0.05; done; rm -f @DIR@/crash; exit 1"]
replicas = 1

[services.web.health]
kind = "none"

[services.web.restart]
backoff = { initial = "50ms", max = "1s", reset_after = "100ms" }

[services.web.stop]
timeout = "2s"
"""


def detached_pids(dep, count: int) -> list[int]:
    path = dep.dir / "detached"
    wait_until(lambda: path.exists() and len(path.read_text().split()) >= count, 10,
               f"{count} detached sleep(s) started")
    pids = [int(pid) for pid in path.read_text().split()]
    for pid in pids:
        dep.track_pid(pid, "a detached sleep of the replica")
    return pids


def up_with_cgroups(dep):
    run = dep.up()
    assert run.returncode == 0, run.describe()
    log = dep.log_text()
    if "replica trees: a cgroup per replica" not in log:
        line = next((l for l in log.splitlines() if "replica trees:" in l), "no line")
        pytest.skip(f"cgroups are not writable here: {line}")
    return run


def cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(l for l in f.read().splitlines() if l.startswith("0::"))[3:]


def cgroup2_mount() -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    raise AssertionError("no cgroup2 mount, yet the supervisor used one")


def test_a_restart_kills_the_detached_descendants_of_the_crashed_run(deployment):
    dep = deployment(ESCAPER)
    up_with_cgroups(dep)
    first = dep.replica_pids()["web.0"]
    [detached] = detached_pids(dep, 1)
    assert cgroup_of(detached) == cgroup_of(first)
    assert cgroup_of(first).endswith("/web.0"), cgroup_of(first)

    (dep.dir / "crash").touch()
    dep.wait_for(lambda s: replaced(s, "web.0", first), 10, "web.0 restarted")
    assert_gone([detached], 5)
    # The new run has its own detached sleep, in the same (re-created) cgroup.
    second = detached_pids(dep, 2)[1]
    assert is_alive(second)

    run = dep.down()
    assert run.returncode == 0, run.describe()
    assert_gone([second], 5)


def test_down_kills_the_detached_descendants_and_removes_the_cgroups(deployment):
    dep = deployment(ESCAPER)
    up_with_cgroups(dep)
    replica = dep.replica_pids()["web.0"]
    [detached] = detached_pids(dep, 1)
    deployment_dir = cgroup2_mount() + cgroup_of(replica).rsplit("/", 1)[0]
    assert os.path.isdir(deployment_dir)
    assert "deployctl-" + dep.name + "-" in deployment_dir

    run = dep.down()
    assert run.returncode == 0, run.describe()
    assert_gone([replica, detached], 5)
    wait_until(lambda: not os.path.exists(deployment_dir), 5,
               f"{deployment_dir} removed")


def test_without_writable_cgroups_replicas_keep_process_groups(deployment):
    dep = deployment(ESCAPER)
    dep.env["DEPLOYCTL_REPLICA_CGROUPS"] = "off"
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "replica trees: process groups only (DEPLOYCTL_REPLICA_CGROUPS=off)" in dep.log_text()
    [detached] = detached_pids(dep, 1)
    first = dep.replica_pids()["web.0"]
    (dep.dir / "crash").touch()
    dep.wait_for(lambda s: replaced(s, "web.0", first), 10, "web.0 restarted")
    # A cgroup's tree is killed before the restart is even decided: this one must live on.
    assert is_alive(detached), "the old behaviour: the detached sleep outlives the restart"
    run = dep.down()
    assert run.returncode == 0, run.describe()
    assert_gone([detached], 5)  # `down` still cleans up what is reparented to the supervisor


def test_after_an_upgrade_in_place_replicas_keep_their_cgroups(deployment):
    """The new binary finds each replica's cgroup by its path (name, state dir, replica id)."""
    dep = deployment(ESCAPER)
    up_with_cgroups(dep)
    first = dep.replica_pids()["web.0"]
    [detached] = detached_pids(dep, 1)
    new_binary = dep.dir / "deployctl-new"
    shutil.copy2(deployctl_bin(), new_binary)
    run = dep.deployctl("upgrade", "--name", dep.name, "--binary", str(new_binary), timeout=40)
    assert run.returncode == 0, run.describe()
    assert dep.replica_pids()["web.0"] == first and is_alive(detached)

    (dep.dir / "crash").touch()
    dep.wait_for(lambda s: replaced(s, "web.0", first), 10, "web.0 restarted")
    assert_gone([detached], 5)
    assert dep.down().returncode == 0


def test_down_after_a_supervisor_kill_takes_the_detached_descendants_too(deployment):
    """What a supervisor killed with SIGKILL left in its replicas' cgroups is killed by the
    next `down` along with the recorded replicas, and the cgroups are removed."""
    dep = deployment(ESCAPER)
    up_with_cgroups(dep)
    replica = dep.replica_pids()["web.0"]
    [detached] = detached_pids(dep, 1)
    deployment_dir = cgroup2_mount() + cgroup_of(replica).rsplit("/", 1)[0]
    supervisor = dep.status()["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not is_alive(supervisor), 5, "the supervisor's death")
    assert is_alive(replica) and is_alive(detached)

    run = dep.deployctl("down", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    assert_gone([replica, detached], 5)
    assert not os.path.exists(deployment_dir)


# Each replica's first act: writing down its own cgroup, before anything could move it.
FIRST_SIGHT = """
name = "@NAME@"

[services.web]
command = ["/bin/sh", "-c", "cat /proc/self/cgroup > @DIR@/cgroup.$DEPLOYCTL_REPLICA; exec /bin/sleep 600"]
replicas = 2

[services.web.health]
kind = "none"
"""


def clone3_into_cgroup_expected() -> bool:
    """Where the build spawns into cgroups (x86-64, not the sanitizer build: its children copy
    the supervisor's memory, and clone3's entry is for children that share it) and the kernel
    can (Linux >= 5.7)."""
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (platform.machine() == "x86_64" and (major, minor) >= (5, 7)
            and os.environ.get("DEPLOYCTL_SANITIZED") != "1")


@pytest.mark.parametrize("clone_into_cgroup", ["on", "off"])
def test_a_replica_starts_in_its_cgroup(deployment, clone_into_cgroup):
    """Born there with clone3 (CLONE_INTO_CGROUP: no migration, the log says so), or, with
    DEPLOYCTL_CLONE_INTO_CGROUP=off (what an old kernel gets), moved there before its exec."""
    if clone_into_cgroup == "on" and not clone3_into_cgroup_expected():
        pytest.skip("clone3 with CLONE_INTO_CGROUP needs Linux >= 5.7 and an x86-64, unsanitized build")
    dep = deployment(FIRST_SIGHT)
    dep.env["DEPLOYCTL_CLONE_INTO_CGROUP"] = clone_into_cgroup
    up_with_cgroups(dep)
    pids = dep.replica_pids()
    for replica in ("web.0", "web.1"):
        seen = dep.dir / f"cgroup.{replica[4:]}"
        wait_until(lambda: seen.exists() and seen.read_text().endswith("\n"), 10,
                   f"{replica} wrote its cgroup")
        first_sight = next(l for l in seen.read_text().splitlines() if l.startswith("0::"))
        assert first_sight[3:] == cgroup_of(pids[replica]), first_sight
        assert first_sight.endswith("/" + replica), first_sight
        born = f"{replica} started (pid {pids[replica]}, born in its cgroup)"
        assert (born in dep.log_text()) == (clone_into_cgroup == "on"), dep.log_text()
    run = dep.down()
    assert run.returncode == 0, run.describe()
    assert_gone(list(pids.values()), 5)
