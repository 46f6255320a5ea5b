"""Per-service log files: rotation by rename keeps every line exactly once and in order,
`deployctl logs` reads them (-n, a replica filter, -f across rotations), a crashed replica's
last lines are kept, an unwritable directory does not stop the deployment, and under systemd
each line goes to the journal with fields naming it."""
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import all_ready, deployctl_bin, replica_by_id, wait_until

COUNT = 2000
MAX_SIZE = 4096
KEEP = 40  # enough to keep all COUNT lines: nothing is rotated away in these tests

COUNTING = """
name = "@NAME@"

[logs]
max_size = "MAXSIZE"
keep = KEEP

[services.web]
command = ["@PYTHON@", "@WORKER@", "count", "COUNT", "--pause", "PAUSE"]
replicas = REPLICAS

[services.web.stop]
timeout = "2s"
"""

COUNT_LINE = re.compile(r"^\S+ (web\.\d+) out \| count (web\.\d+) (\d{5}|done)$")


def counting_spec(replicas=1, count=COUNT, pause=0.0, max_size=MAX_SIZE, keep=KEEP) -> str:
    return (COUNTING.replace("MAXSIZE", str(max_size)).replace("KEEP", str(keep))
            .replace("REPLICAS", str(replicas)).replace("COUNT", str(count))
            .replace("PAUSE", str(pause)))


def log_dir(dep) -> Path:
    """Where the logs go with DEPLOYCTL_RUNTIME_DIR set (docs/logs.md): STATE/logs."""
    return dep.state_dir / "logs"


def files_oldest_first(directory: Path, base: str) -> list[Path]:
    rotated = sorted((p for p in directory.glob(f"{base}.log.*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))
    return rotated + [directory / f"{base}.log"]


def counted(lines, replica="web.0") -> list[str]:
    """The numbers (and "done") of `replica`'s count lines, in order; each line's source must
    be the replica that wrote it."""
    found = []
    for line in lines:
        match = COUNT_LINE.match(line)
        if match and match[2] == replica:
            assert match[1] == replica, f"line logged under the wrong replica: {line}"
            found.append(match[3])
    return found


def expected(count=COUNT) -> list[str]:
    return [f"{n:05d}" for n in range(count)] + ["done"]


def file_lines(dep, base="web") -> list[str]:
    return [line for path in files_oldest_first(log_dir(dep), base) if path.exists()
            for line in path.read_text().splitlines()]


def wait_for_done(dep, replica="web.0", timeout=30.0) -> None:
    wait_until(lambda: "done" in counted(file_lines(dep), replica), timeout,
               f"{replica}'s last count line in the log files")


def test_rotation_keeps_every_line_once_in_order(deployment):
    dep = deployment(counting_spec())
    assert dep.up().returncode == 0
    wait_for_done(dep)

    files = files_oldest_first(log_dir(dep), "web")
    assert len(files) >= 10, f"expected several rotations, got {[p.name for p in files]}"
    for path in files:
        assert path.stat().st_size <= MAX_SIZE, f"{path} is over max_size"
        assert path.read_text().endswith("\n"), f"{path} ends in a cut line"
    assert counted(file_lines(dep)) == expected()

    shown = dep.deployctl("logs", "web", "-n", str(COUNT + 100), str(dep.spec_path))
    assert shown.returncode == 0, shown.describe()
    assert counted(shown.stdout.splitlines()) == expected()

    last = dep.deployctl("logs", "web.0", "-n", "3", str(dep.spec_path))
    assert last.returncode == 0, last.describe()
    assert counted(last.stdout.splitlines()) == [f"{COUNT - 2:05d}", f"{COUNT - 1:05d}", "done"]
    assert len(last.stdout.splitlines()) == 3


def test_follow_sees_every_line_once_across_rotations(deployment):
    dep = deployment(counting_spec(pause=0.001))
    out_path = dep.dir / "follow.out"
    # Started before the deployment: it waits for the file, then follows it through every
    # rotation the worker causes.
    with open(out_path, "wb") as out:
        follower = subprocess.Popen([deployctl_bin(), "logs", "web", "-f", str(dep.spec_path)],
                                    stdout=out, stderr=subprocess.PIPE, env=dep.env, cwd=dep.dir)
    try:
        assert dep.up().returncode == 0
        wait_until(lambda: "done" in counted(out_path.read_text().splitlines()), 60,
                   "the follower to show the last count line")
        assert len(files_oldest_first(log_dir(dep), "web")) >= 10
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(10)
    assert counted(out_path.read_text().splitlines()) == expected()


def test_replica_filter_and_line_count(deployment):
    dep = deployment(counting_spec(replicas=2, count=50))
    assert dep.up().returncode == 0
    wait_for_done(dep, "web.0")
    wait_for_done(dep, "web.1")

    one = dep.deployctl("logs", "web.1", "-n", "1000", str(dep.spec_path))
    assert one.returncode == 0, one.describe()
    lines = one.stdout.splitlines()
    assert lines and all(line.split(" ")[1] == "web.1" for line in lines), one.stdout
    assert counted(lines, "web.1") == expected(50)

    both = dep.deployctl("logs", "-n", "1000", "--name", dep.name)
    assert both.returncode == 0, both.describe()
    assert counted(both.stdout.splitlines(), "web.0") == expected(50)
    assert counted(both.stdout.splitlines(), "web.1") == expected(50)
    times = [line.split(" ")[0] for line in both.stdout.splitlines()]
    assert times == sorted(times), "lines of several replicas are shown in time order"

    five = dep.deployctl("logs", "web", "-n", "5", str(dep.spec_path))
    assert five.returncode == 0 and len(five.stdout.splitlines()) == 5, five.describe()

    bad = dep.deployctl("logs", "web.x", str(dep.spec_path))
    assert bad.returncode == 2 and "SERVICE.N" in bad.stderr, bad.describe()
    missing = dep.deployctl("logs", "api", str(dep.spec_path))
    assert missing.returncode == 1 and "no log of api" in missing.stderr, missing.describe()


def test_crashing_replica_keeps_its_last_lines_and_logs_without_a_supervisor(deployment):
    dep = deployment(COUNTING.replace('"--pause", "PAUSE"', '"--crash", "--once", "@DIR@/crashed"')
                     .replace("MAXSIZE", "1MiB").replace("KEEP", "2").replace("REPLICAS", "1")
                     .replace("COUNT", "300"))
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: replica_by_id(s, "web.0")["restarts"] == 1 and all_ready(s),
                 timeout=15, what="web.0 restarted after its crash")
    # The lines written just before the exit are read from the pipe before the restart.
    assert counted(file_lines(dep)) == expected(300)
    assert dep.down().returncode == 0
    after = dep.deployctl("logs", "web", "-n", "2", str(dep.spec_path))  # no supervisor now
    assert after.returncode == 0, after.describe()
    assert len(after.stdout.splitlines()) == 2


def test_pre_start_output_has_its_own_file(deployment):
    dep = deployment("""
name = "@NAME@"

[[pre_start]]
name = "migrate"
command = ["/bin/sh", "-c", "echo applying 0001; echo warned >&2"]

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
""")
    assert dep.up().returncode == 0
    text = (log_dir(dep) / "pre_start.log").read_text()
    assert re.search(r"^\S+ pre_start\.migrate out \| applying 0001$", text, re.M), text
    assert re.search(r"^\S+ pre_start\.migrate err \| warned$", text, re.M), text
    shown = dep.deployctl("logs", "pre_start.migrate", str(dep.spec_path))
    assert shown.returncode == 0 and "applying 0001" in shown.stdout, shown.describe()


def test_unwritable_log_dir_does_not_stop_the_deployment(deployment):
    dep = deployment(counting_spec(count=20).replace('keep = KEEP', 'keep = 2')
                     .replace("[logs]", '[logs]\ndir = "@DIR@/blocker/logs"'))
    (dep.dir / "blocker").write_text("a file where the log directory should be\n")
    dep.up_foreground()
    dep.wait_for(lambda s: all_ready(s, 1), timeout=15, what="web.0 ready")
    # Still supervising and still showing replica output on its terminal.
    wait_until(lambda: "count web.0 done" in "".join(dep.foreground_output()), 15,
               "output on the terminal")
    wait_until(lambda: "cannot create" in dep.log_text(), 10, "the log writer's warning")
    log = dep.log_text()
    assert log.count("cannot create") == 1, log
    assert all_ready(dep.status(), 1)
    shown = dep.deployctl("logs", "web", str(dep.spec_path))
    assert shown.returncode == 1 and "no log of web" in shown.stderr, shown.describe()


# --- the journal ---------------------------------------------------------------------------

def parse_journal_datagram(data: bytes) -> dict[str, str]:
    """sd_journal_send's native protocol: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
    fields, i = {}, 0
    while i < len(data):
        newline = data.index(b"\n", i)
        line = data[i:newline]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = newline + 1
        else:
            key = line
            size = int.from_bytes(data[newline + 1:newline + 9], "little")
            value = data[newline + 9:newline + 9 + size]
            i = newline + 9 + size + 1
        fields[key.decode()] = value.decode(errors="replace")
    return fields


def can_unshare_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not can_unshare_mounts(), reason="needs `unshare -m` (root): the journal "
                    "socket is put at /run/systemd/journal/socket in a private mount namespace")
def test_journal_gets_each_line_with_fields_when_stderr_is_the_journal(deployment):
    """journald cannot run here (PID 1 is not systemd). The test binds a datagram socket of its
    own and, in a private mount namespace of the supervisor only, mounts it at the path
    libsystemd sends to; the host's /run is untouched."""
    import socket
    dep = deployment(counting_spec(count=5))
    journal_path = dep.dir / "journal.sock"
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(journal_path))
    journal.settimeout(0.2)
    stderr_path = dep.dir / "journal-stream.stderr"
    stderr_path.touch()
    info = stderr_path.stat()
    dep.env = {**dep.env, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
              'touch /run/systemd/journal/socket && '
              f'mount --bind {journal_path} /run/systemd/journal/socket && '
              f'exec "$0" "$@" 2>>{stderr_path}')
    try:
        # In the foreground, as systemd runs it: stderr (the "journal") is the file above.
        with open(dep.dir / "journal-stream.stdout", "wb") as out:
            dep.foreground = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                 deployctl_bin(), "up", str(dep.spec_path)],
                stdin=subprocess.DEVNULL, stdout=out, env=dep.env, cwd=dep.dir,
                start_new_session=True)
        dep.ran_deployctl = True
        dep.track_pid(dep.foreground.pid, "foreground supervisor in a mount namespace")
        threading.Thread(target=dep.foreground.wait, daemon=True).start()
        dep.wait_for(lambda s: all_ready(s, 1), timeout=20, what="web.0 ready")
        received = []
        deadline = time.monotonic() + 20
        # stdout and stderr are separate pipes: wait for the last stdout line and for a
        # stderr line, in whichever order they come.
        while time.monotonic() < deadline and not (
                any(f.get("MESSAGE") == "count web.0 done" for f in received)
                and any(f.get("DEPLOYCTL_STREAM") == "stderr" for f in received)):
            try:
                received.append(parse_journal_datagram(journal.recv(65536)))
            except (TimeoutError, socket.timeout):
                pass
    finally:
        journal.close()
    messages = [f for f in received if f.get("DEPLOYCTL_REPLICA") == "web.0"]
    assert [f["MESSAGE"] for f in messages if f["MESSAGE"].startswith("count")] == \
        [f"count web.0 {n}" for n in expected(5)]
    pid = dep.replica_pids()["web.0"]
    first = next(f for f in messages if f["MESSAGE"].startswith("count"))
    assert first["PRIORITY"] == "6" and first["DEPLOYCTL_STREAM"] == "stdout"
    assert first["SYSLOG_IDENTIFIER"] == "web" and first["DEPLOYCTL_SERVICE"] == "web"
    assert first["DEPLOYCTL_DEPLOYMENT"] == dep.name
    assert first["DEPLOYCTL_REPLICA_PID"] == str(pid) and first["SYSLOG_PID"] == str(pid)
    err = next(f for f in messages if f["DEPLOYCTL_STREAM"] == "stderr")
    assert err["PRIORITY"] == "5" and "started" in err["MESSAGE"]
    # Not printed to stderr as well (it is the journal: the line would be there twice).
    assert "count web.0" not in stderr_path.read_text()
    # The files get the lines too.
    assert counted(file_lines(dep)) == expected(5)
