"""Spec settings applied to real replicas: user/group, env_file, {replica}/{port} expansion."""
from pathlib import Path

from harness import replica_by_id, wait_until

SHELL_APP = """
name = "@NAME@"

[services.app]
command = ["/bin/sh", "-c", "echo \\"A=$A B=$B R=$R USER=$USER\\"; exec sleep 300"]
replicas = 2
env = { B = "from-spec", R = "replica-{replica}" }
@EXTRA@

[services.app.health]
kind = "none"

[services.app.stop]
timeout = "1s"
"""


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_user_and_group_are_dropped_to(deployment):
    dep = deployment(SHELL_APP.replace("@EXTRA@", 'user = "nobody"\ngroup = "nogroup"\nworking_dir = "/"'))
    assert dep.up().returncode == 0
    for pid in dep.replica_pids().values():
        assert uid_of(pid) == 65534
    wait_until(lambda: "app.0 | A= B=from-spec R=replica-0 USER=nobody" in dep.log_text(), 5,
               "the replica's output shows its user")


def test_env_file_is_read_and_env_wins_over_it(deployment):
    dep = deployment(SHELL_APP.replace("@EXTRA@", 'env_file = "app.env"'))
    (dep.dir / "app.env").write_text("# settings\nA=from-file\nB=overridden-by-env\n")
    assert dep.up().returncode == 0
    wait_until(lambda: "app.1 | A=from-file B=from-spec R=replica-1" in dep.log_text(), 5,
               "the replica's output shows the env_file's values")


def test_missing_env_file_fails_the_start_with_the_reason(deployment):
    dep = deployment(SHELL_APP.replace("@EXTRA@", 'env_file = "missing.env"'))
    run = dep.up()
    assert run.returncode == 1, run.describe()
    assert "cannot read env_file" in run.stderr and "missing.env" in run.stderr, run.describe()
