"""The management socket admits only root and the supervisor's own uid: by its file mode, and,
when the file mode is opened up, by the supervisor's SO_PEERCRED check."""
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from harness import deployctl_bin

ONE_WORKER = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 1
"""

AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
# Commands another user tries; none may be obeyed.
INTRUSIONS = [("status", "--json", "--name", "itest"), ("scale", "web=3", "--name", "itest"),
              ("down", "--name", "itest")]


def executable_by_others(path: Path) -> bool:
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


@pytest.fixture
def deployctl_for_nobody():
    """DEPLOYCTL_BIN, or a copy of it that `nobody` can execute."""
    binary = Path(deployctl_bin())
    if executable_by_others(binary):
        yield str(binary)
        return
    directory = Path(tempfile.mkdtemp(prefix="dctl-bin-"))
    directory.chmod(0o755)
    shutil.copy(binary, directory / "deployctl")
    (directory / "deployctl").chmod(0o755)
    yield str(directory / "deployctl")
    shutil.rmtree(directory)


def assert_refused(dep, binary: str, when: str) -> None:
    for args in INTRUSIONS:
        run = dep.deployctl(*args, prefix=AS_NOBODY, binary=binary)
        assert run.returncode == 5, f"{when}: {run.describe()}"
        assert "permission denied" in run.stderr.lower(), f"{when}: {run.describe()}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as nobody")
def test_management_socket_refuses_another_uid(deployment, deployctl_for_nobody):
    dep = deployment(ONE_WORKER)
    assert dep.up().returncode == 0
    before = dep.status()
    mode = os.stat(dep.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)

    assert_refused(dep, deployctl_for_nobody, "with the modes as created")

    dep.dir.chmod(0o711)
    dep.runtime_dir.chmod(0o711)
    dep.state_dir.chmod(0o755)
    dep.socket_path.chmod(0o666)
    assert_refused(dep, deployctl_for_nobody, "with the socket open to all (SO_PEERCRED only)")

    after = dep.status()
    assert after["pid"] == before["pid"] and after["state"] == "running"
    assert dep.replica_pids(after) == dep.replica_pids(before), "another uid changed the scale"
