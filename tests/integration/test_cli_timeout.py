"""Issue 11 finding 6: every CLI request has a timeout with its own exit code (7), tested
against a real supervisor stopped with SIGSTOP."""
import os
import signal
import socket
import threading

from harness import is_alive, sleepers, wait_until


def test_every_request_times_out_against_a_stopped_supervisor(deployment):
    dep = deployment(sleepers(1))
    assert dep.up().returncode == 0
    pid = dep.status()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        spec = str(dep.spec_path)
        for args, limit in ((("status", "--timeout", "1s", spec), 1.0),
                            (("scale", "web=2", "-f", spec, "--timeout", "1s"), 1.0),
                            (("reload", spec, "--timeout=1500ms"), 1.5),
                            (("down", "--timeout", "1s", spec), 1.0),
                            (("status", spec), 10.0)):  # the default for status
            run = dep.deployctl(*args, timeout=limit + 10)
            assert run.returncode == 7, run.describe()
            assert "no answer from the supervisor within" in run.stderr, run.describe()
            assert limit <= run.seconds < limit + 3, run.describe()
    finally:
        os.kill(pid, signal.SIGCONT)
    run = dep.deployctl("--timeout", "x", "status", str(dep.spec_path))
    assert run.returncode == 2 and "--timeout needs a duration" in run.stderr, run.describe()
    # As the message says, a timed-out request may still be carried out: the `down` above
    # stops the deployment once the supervisor runs again.
    wait_until(lambda: not is_alive(pid), 15, "the queued down to stop the supervisor")
    assert dep.down().returncode == 3




def test_an_answer_that_never_ends_its_line_is_refused_not_buffered(deployment):
    """A peer on the management socket that streams bytes without a newline (not a deployctl
    supervisor, or a broken one) gets a clear error once the CLI's line cap (64 MiB) is passed,
    long before the request's timeout; the CLI does not grow with what it is sent."""
    dep = deployment(sleepers(1))
    dep.state_dir.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(dep.socket_path))
    server.listen(1)
    sent = []

    def flood():
        connection, _ = server.accept()
        chunk = b"x" * 65536
        with connection:
            try:
                for _ in range(2048):  # 128 MiB at most: twice the cap
                    connection.sendall(chunk)
                    sent.append(len(chunk))
            except OSError:
                pass  # the CLI gave up and closed: what the test wants

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        run = dep.deployctl("status", "--timeout", "60s", str(dep.spec_path), timeout=70)
        thread.join(30)
    finally:
        server.close()
    assert run.returncode == 1, run.describe()
    assert "exceeds 64 MiB without ending its line" in run.stderr, run.describe()
    assert run.seconds < 30, run.describe()
    assert 64 << 20 <= sum(sent) < 128 << 20, sum(sent)


def _closing_peer(dep, release_lock_after: float | None):
    """A stand-in for a supervisor in the last moments of its exit (a real one gives this
    window only by chance: CI once caught `down` in it right after a failed `up -d`). It holds
    the deployment's lock, accepts one request and closes without answering; the lock is let go
    `release_lock_after` seconds later (None: never, a live but broken peer)."""
    import fcntl
    dep.state_dir.mkdir(parents=True)
    lock = open(dep.state_dir / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(dep.socket_path))
    server.listen(1)

    def serve():
        connection, _ = server.accept()
        connection.recv(4096)
        connection.close()
        if release_lock_after is not None:
            threading.Event().wait(release_lock_after)
            server.close()
            os.unlink(dep.socket_path)
            lock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, server, lock


def test_down_during_the_supervisors_exit_is_not_an_error(deployment):
    dep = deployment(sleepers(1))
    thread, _, _ = _closing_peer(dep, release_lock_after=0.3)
    run = dep.deployctl("down", str(dep.spec_path))
    thread.join(5)
    assert run.returncode == 3, run.describe()
    assert "is not running" in run.stderr, run.describe()
    assert run.seconds >= 0.3, run.describe()


def test_down_to_a_peer_that_closes_but_lives_on_is_an_error(deployment):
    dep = deployment(sleepers(1))
    thread, server, lock = _closing_peer(dep, release_lock_after=None)
    try:
        run = dep.deployctl("down", "--timeout", "500ms", str(dep.spec_path))
    finally:
        thread.join(5)
        server.close()
        lock.close()
    assert run.returncode == 1, run.describe()
    assert "closed the connection without answering" in run.stderr, run.describe()
    assert run.seconds < 5, run.describe()
