"""Issue 11 finding 1, the edges: the supervisor's file descriptor limit is raised to the hard
one, a spec that cannot fit it is refused before anything starts, and the management socket
neither spins nor lets idle clients take every fd. Real limits via prlimit."""
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import all_ready, replica_by_id, sleepers, wait_until


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect_idle(path: Path, count: int) -> list[socket.socket]:
    """`count` connections to the management socket that never send a request."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(str(path))
        except BlockingIOError:  # the backlog is full: the connection is pending, that is fine
            pass
        clients.append(client)
    return clients


def up_limited(dep, soft: int, hard: int):
    """`deployctl up -d` under prlimit --nofile=SOFT:HARD."""
    run = dep.deployctl("up", "-d", str(dep.spec_path),
                        prefix=("prlimit", f"--nofile={soft}:{hard}"), timeout=30)
    if run.returncode == 0:
        dep.status()
    return run


@pytest.fixture
def many_fds():
    """Lets this test process hold a thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_up_refuses_a_spec_that_needs_more_fds_than_the_hard_limit(deployment):
    dep = deployment(sleepers(40))
    run = up_limited(dep, 64, 64)
    assert run.returncode == 1, run.describe()
    assert "needs about" in run.stderr and "RLIMIT_NOFILE) is 64" in run.stderr, run.describe()
    assert "nothing was started" in run.stderr, run.describe()
    assert run.seconds < 5, run.describe()
    assert not dep.socket_path.exists(), "a supervisor is running"
    assert not dep.leftovers(), dep.leftovers()


def test_up_raises_the_soft_fd_limit_to_the_hard_one_but_not_for_replicas(deployment):
    dep = deployment(sleepers(40))
    run = up_limited(dep, 64, 4096)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert soft_nofile(status["pid"]) == 4096
    replica = replica_by_id(status, "web.39")
    assert soft_nofile(replica["pid"]) == 64  # select()-based programs keep working


def test_accept_backs_off_while_the_supervisor_is_out_of_fds(deployment, many_fds):
    dep = deployment(sleepers(2))
    assert dep.up().returncode == 0
    pid = dep.status()["pid"]
    # Leave the supervisor 4 free fds, then connect 400 idle clients: accept() hits EMFILE.
    limit, hard = open_fds(pid) + 4, soft_nofile(pid)
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{hard}"], check=True)
    clients = connect_idle(dep.socket_path, 400)
    try:
        wait_until(lambda: "cannot accept a client" in dep.log_text(), 5, "the EMFILE warning")
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)  # measuring CPU use over a fixed window: nothing to wait for
        used = (cpu_seconds(pid) - before) / (time.monotonic() - started)
        assert used < 0.25, f"the supervisor used {used:.0%} of a core while out of fds"
        assert dep.log_text().count("cannot accept a client") == 1, dep.log_text()
    finally:
        for client in clients:
            client.close()
    # Once the clients are gone (and the limit is back) it serves again and still supervises.
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={hard}:{hard}"], check=True)
    status = dep.wait_for(lambda s: all_ready(s, 2), timeout=30, what="status answered again")
    os.kill(replica_by_id(status, "web.0")["pid"], signal.SIGKILL)
    dep.wait_for(lambda s: replica_by_id(s, "web.0")["restarts"] == 1 and all_ready(s, 2),
                 timeout=15, what="web.0 restarted")


def test_idle_management_clients_do_not_starve_status_or_restarts(deployment, many_fds):
    dep = deployment(sleepers(2))
    assert up_limited(dep, 256, 256).returncode == 0
    status = dep.status()
    pid = status["pid"]
    clients = connect_idle(dep.socket_path, 400)
    try:
        time.sleep(0.5)  # let the supervisor take in what it will of them
        assert open_fds(pid) < 100, f"{open_fds(pid)} fds open: idle clients are not bounded"
        before, started = cpu_seconds(pid), time.monotonic()
        run, status = dep.try_status()
        assert status is not None, run.describe()
        os.kill(replica_by_id(status, "web.1")["pid"], signal.SIGKILL)
        dep.wait_for(lambda s: replica_by_id(s, "web.1")["restarts"] == 1 and all_ready(s, 2),
                     timeout=15, what="web.1 restarted while 400 clients idle")
        used = (cpu_seconds(pid) - before) / (time.monotonic() - started)
        assert used < 0.5, f"the supervisor used {used:.0%} of a core"
    finally:
        for client in clients:
            client.close()


