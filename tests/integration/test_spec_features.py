"""Spec settings applied to real replicas: user/group, env_file, {replica}/{port} expansion."""
from pathlib import Path

from harness import free_port_range, http_get, replica_by_id, server_bin, wait_until

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
    wait_until(lambda: "app.0 out | A= B=from-spec R=replica-0 USER=nobody" in dep.service_log("app"), 5,
               "the replica's output shows its user")


def test_env_file_is_read_and_env_wins_over_it(deployment):
    dep = deployment(SHELL_APP.replace("@EXTRA@", 'env_file = "app.env"'))
    (dep.dir / "app.env").write_text("# settings\nA=from-file\nB=overridden-by-env\n")
    assert dep.up().returncode == 0
    wait_until(lambda: "app.1 out | A=from-file B=from-spec R=replica-1" in dep.service_log("app"), 5,
               "the replica's output shows the env_file's values")


def test_missing_env_file_fails_the_start_with_the_reason(deployment):
    dep = deployment(SHELL_APP.replace("@EXTRA@", 'env_file = "missing.env"'))
    run = dep.up()
    assert run.returncode == 1, run.describe()
    assert "cannot read env_file" in run.stderr and "missing.env" in run.stderr, run.describe()


PROBED = """
name = "@NAME@"

[services.app]
command = @COMMAND@
replicas = 2
@ADDRESS@

[services.app.health]
kind = "@KIND@"
@CHECK@
interval = "200ms"
timeout = "150ms"
failures = 2

[services.app.stop]
timeout = "1s"
"""


def probed(kind: str, command: str, address: str = "", check: str = "") -> str:
    return (PROBED.replace("@KIND@", kind).replace("@COMMAND@", command)
            .replace("@ADDRESS@", address).replace("@CHECK@", check))


def test_exec_health_gates_readiness_and_replaces_a_failing_replica(deployment):
    dep = deployment(probed("exec", '["/bin/sleep", "300"]',
                            check='command = ["/bin/sh", "-c", "test -e @DIR@/healthy-{replica}"]'))
    (dep.dir / "healthy-0").write_text("")
    foreground = dep.up_foreground()
    wait_until(lambda: replica_by_id(dep.try_status()[1] or {"services": []}, "app.0") is not None
               and replica_by_id(dep.status(), "app.0")["state"] == "ready", 10, "app.0 ready")
    assert replica_by_id(dep.status(), "app.1")["state"] == "starting"  # its check fails
    (dep.dir / "healthy-1").write_text("")
    wait_until(lambda: replica_by_id(dep.status(), "app.1")["state"] == "ready", 10, "app.1 ready")
    (dep.dir / "healthy-0").unlink()
    wait_until(lambda: (replica_by_id(dep.status(), "app.0")["last_exit"] or {}).get("reason")
               == "health", 10, "app.0 replaced after failing its exec checks")
    assert foreground.poll() is None


def test_tcp_health_on_per_replica_ports(deployment):
    base = free_port_range(2)
    command = f'["{server_bin()}", "--listen", "127.0.0.1:{{port}}"]'
    dep = deployment(probed("tcp", command, address=f"port = {base}"))
    assert dep.up().returncode == 0
    status = dep.status()
    assert [r["state"] for r in status["services"][0]["replicas"]] == ["ready", "ready"]
    for index in range(2):
        assert http_get(base + index, "/healthz").status == 200


def test_replicas_that_do_not_speak_the_control_protocol_are_drained_with_the_stop_signal(deployment):
    # sleep knows nothing of DRAIN=1: scale-down and restart must send it stop.signal at once,
    # not wait stop.timeout (10 s here) before a SIGKILL.
    dep = deployment(SHELL_APP.replace("@EXTRA@", "").replace('timeout = "1s"', 'timeout = "10s"'))
    assert dep.up().returncode == 0
    run = dep.deployctl("restart", "--name", dep.name, timeout=30)
    assert run.returncode == 0 and run.seconds < 3, run.describe()
    run = dep.scale(app=1)
    assert run.returncode == 0 and run.seconds < 3, run.describe()
    assert "exited: signal 15 (SIGTERM)" in dep.log_text()
