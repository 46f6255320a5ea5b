"""Issue 11 finding 8: lines lost to a full disk are marked in the service log, and a log
truncated from outside (copytruncate) is never padded with NUL bytes. A real full tmpfs in a
private mount namespace (root)."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness import deployctl_bin, run_command, wait_until


LOUD = """
name = "@NAME@"

[logs]
dir = "@DIR@/logs"

[services.web]
command = ["@PYTHON@", "-c", "import time\\ni = 0\\nwhile True:\\n    print('line', i, 'y' * 200, flush=True)\\n    i += 1\\n    time.sleep(0.004)"]

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "1s"
"""


def can_unshare_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not can_unshare_mounts(), reason="needs `unshare -m` (root) for a tmpfs")
def test_full_disk_leaves_a_marker_and_copytruncate_no_nul_bytes(deployment):
    dep = deployment(LOUD)
    (dep.dir / "logs").mkdir()
    # The supervisor runs in a private mount namespace whose log directory is a 256 KiB tmpfs.
    script = (f"mount -t tmpfs -o size=256k tmpfs {dep.dir}/logs && "
              f"exec {deployctl_bin()} up -d {dep.spec_path}")
    dep.ran_deployctl = True
    run = run_command(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                      dep.env, dep.dir, 30, dep.dir)
    assert run.returncode == 0, run.describe()
    pid = dep.status()["pid"]
    logs = Path(f"/proc/{pid}/root{dep.dir}/logs")  # the tmpfs, seen through its namespace
    log = logs / "web.log"
    wait_until(lambda: log.exists() and log.stat().st_size > 40_000, 15, "web.log to grow")
    os.truncate(log, 0)  # copytruncate by an outside rotator
    filler = os.open(logs / "filler", os.O_WRONLY | os.O_CREAT)  # then the disk fills up
    try:
        while os.write(filler, b"f" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    wait_until(lambda: "cannot write" in dep.log_text(), 10, "the writer to hit the full disk")
    time.sleep(0.5)  # lines keep coming (every 4 ms) and are lost meanwhile
    (logs / "filler").unlink()
    wait_until(lambda: b"lines lost: " in log.read_bytes(), 15, "the marker after the retry")
    data = log.read_bytes()
    nuls = data.count(b"\0")
    assert nuls == 0, f"{nuls} NUL bytes in web.log"
    marker = re.search(rb"deployctl err \| (\d+) lines lost: cannot write .*No space left", data)
    assert marker and int(marker[1]) > 0, data[-2000:]
    shown = dep.deployctl("logs", "web", "-n", "100000", str(dep.spec_path),
                          prefix=("nsenter", "-t", str(pid), "-m"))
    assert re.search(r"deployctl err \| \d+ lines lost", shown.stdout), shown.describe()
    assert dep.down().returncode == 0


