"""Issue 11 finding 5: the detached supervisor's own log holds only its own whole lines, never
replica output, and is capped."""
import os
import re

from harness import wait_until


CHATTY = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "-c", "import sys, time\\nfor i in range(200):\\n    print('chatty line', i, 'x' * 100, flush=True)\\n    print('chatty err', i, file=sys.stderr, flush=True)\\ntime.sleep(600)"]

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "1s"
"""


def test_detached_supervisor_log_holds_no_replica_output_and_is_capped(deployment):
    dep = deployment(CHATTY)
    dep.state_dir.mkdir()
    old = "[2020-01-01 00:00:00.000] [info] an old run\n" * 30000  # 1.3 MiB: over the cap
    (dep.state_dir / "supervisor.log").write_text(old)
    assert dep.up().returncode == 0
    wait_until(lambda: "chatty err 199" in dep.service_log("web"), 10, "the replica's output")
    log = (dep.state_dir / "supervisor.log").read_text()
    assert "chatty" not in log, log
    assert "web.0 started" in log
    sanitized = os.environ.get("DEPLOYCTL_SANITIZED") == "1"
    for line in log.splitlines():  # only the supervisor's own, whole lines
        if sanitized and re.match(r"^(==\d+==WARNING: ASan |False positive error reports may "
                                  r"follow|For details see https://github.com/google/sanitizers)",
                                  line):
            continue  # the sanitizer runtime's own note on the spawn's stack switch (process.cc)
        assert re.match(r"^\[\d{4}-\d\d-\d\d [\d:.]+\] \[\w+\] ", line), line
    # The earlier run's log was over the cap: it was set aside, not appended to.
    assert (dep.state_dir / "supervisor.log.1").read_text() == old
    assert len(log) < 1024 * 1024


