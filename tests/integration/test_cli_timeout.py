"""Issue 11 finding 6: every CLI request has a timeout with its own exit code (7), tested
against a real supervisor stopped with SIGSTOP."""
import os
import signal

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


