"""Issue 11 finding 4: what a supervisor killed with SIGKILL leaves running is found by the next
`up` or `down` of the same name (recorded pids checked against their start times) and
stopped, with a clear message instead of "Address already in use". Since issue 14 a new `up`
adopts them while the supervisor's fd keeper lives (test_crash.py); here the keeper is killed
too where `up` must stop them."""
import json
import os
import signal

from harness import all_replicas, is_alive, proc_info, wait_gone, wait_until

# Replicas that do not speak the control protocol and hold the listen socket (inherited fd 3):
# they outlive a killed supervisor and keep the port bound.
HOLDERS = """
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "1s"
"""


def kill_supervisor(dep, keeper_too: bool = False) -> list[int]:
    """SIGKILLs the supervisor (and its fd keeper); returns the replica pids, checked to outlive
    it."""
    status = dep.status()
    pids = [r["pid"] for r in all_replicas(status)]
    if keeper_too:
        record = json.loads((dep.state_dir / "replicas.json").read_text())
        for keeper in (entry["pid"] for entry in record if entry["id"] == "fd-keeper"):
            os.kill(keeper, signal.SIGKILL)
            wait_until(lambda: not is_alive(keeper), 5, "the keeper's death")
    os.kill(status["pid"], signal.SIGKILL)
    wait_until(lambda: not is_alive(status["pid"]), 5, "the supervisor's death")
    assert all(is_alive(pid) for pid in pids), "replicas that ignore their supervisor's death"
    assert (dep.state_dir / "replicas.json").exists()
    return pids


def test_up_stops_what_a_dead_supervisor_left(deployment):
    dep = deployment(HOLDERS)
    assert dep.up().returncode == 0
    old = kill_supervisor(dep, keeper_too=True)
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "a previous supervisor died and left web.0 (pid" in run.stderr, run.describe()
    assert "Address already in use" not in run.output
    assert wait_gone(old, 5) == []
    new = [r["pid"] for r in all_replicas(dep.status())]
    assert len(new) == 2 and set(new).isdisjoint(old)


def test_down_stops_what_a_dead_supervisor_left(deployment):
    dep = deployment(HOLDERS)
    assert dep.up().returncode == 0
    old = kill_supervisor(dep)
    run = dep.deployctl("down", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    assert "was not running; stopped web.0 (pid" in run.stdout, run.describe()
    assert wait_gone(old, 5) == []
    assert not (dep.state_dir / "replicas.json").exists()
    again = dep.deployctl("down", "--name", dep.name)
    assert again.returncode == 3, again.describe()


def test_a_reused_pid_is_never_signalled(deployment):
    dep = deployment(HOLDERS)
    dep.state_dir.mkdir()
    me = proc_info(os.getpid())
    # Our own pid, recorded with another start time: a pid the kernel gave to someone else.
    record = [{"id": "web.0", "pid": os.getpid(), "start_time": me.start_ticks + 1,
               "stop_signal": 15}]
    (dep.state_dir / "replicas.json").write_text(json.dumps(record))
    (dep.state_dir / "lock").touch()
    run = dep.deployctl("down", "--name", dep.name)
    assert run.returncode == 3, run.describe()
    up = dep.up()
    assert up.returncode == 0, up.describe()
    assert "previous supervisor" not in up.stderr, up.describe()
    assert is_alive(os.getpid())
