"""Issue 11 finding 9 (the edges): a refused command exits 6, a parallel `up` names the real
pid, a malformed management request gets a reason, a missing #! interpreter is named, and a
huge environment is rejected by validation."""
import json
import re
import socket
import subprocess

from harness import deployctl_bin, is_alive, sleepers, wait_until


def test_a_command_refused_while_another_runs_exits_6(deployment):
    dep = deployment("""
name = "@NAME@"

[services.web]
command = ["/bin/sh", "-c", "sleep 1; exec @PYTHON@ @WORKER@ ok"]
replicas = 2

[services.web.stop]
timeout = "1s"
""")
    assert dep.up().returncode == 0
    restart = subprocess.Popen([deployctl_bin(), "restart", "-f", str(dep.spec_path)],
                               env=dep.env, cwd=dep.dir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        dep.wait_for(lambda s: len(s["services"][0]["replicas"]) > 2, timeout=10,
                     what="the rollout to start a new replica")
        scale = dep.scale(web=3)
        assert scale.returncode == 6, scale.describe()
        assert "rollout is in progress" in scale.stderr
    finally:
        restart.wait(30)
    assert restart.returncode == 0, restart.stderr


def test_a_parallel_up_names_the_running_supervisor_pid(deployment):
    dep = deployment("""
name = "@NAME@"

[[pre_start]]
name = "slow"
command = ["/bin/sleep", "2"]

[services.web]
command = ["/bin/sleep", "600"]

[services.web.health]
kind = "none"
""")
    first = subprocess.Popen([deployctl_bin(), "up", "-d", str(dep.spec_path)], env=dep.env,
                             cwd=dep.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dep.ran_deployctl = True
    try:
        wait_until(lambda: (dep.state_dir / "lock").exists(), 5, "the first up to lock")
        second = dep.deployctl("up", "-d", str(dep.spec_path))
        assert second.returncode == 4, second.describe()
        match = re.search(r"already running \(pid (\d+)\)", second.stderr)
        assert match, second.describe()
        assert is_alive(int(match[1])), second.describe()
    finally:
        assert first.wait(30) == 0


def test_a_malformed_management_request_gets_a_reason(deployment):
    dep = deployment(sleepers(1))
    assert dep.up().returncode == 0
    for request in (b"[1, 2]\n", b"\"status\"\n", b"{not json\n", b"\n", b"{}\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(dep.socket_path))
            client.sendall(request)
            response = json.loads(client.makefile().readline())
        assert response["ok"] is False and response["exit"] == 2, response
        assert len(response["error"]) > 20 and not response["error"].endswith(": "), response


def test_a_missing_script_interpreter_is_named(deployment):
    dep = deployment("""
name = "@NAME@"

[services.web]
command = ["@DIR@/app.sh"]

[services.web.health]
kind = "none"
""")
    script = dep.dir / "app.sh"
    script.write_text("#!/nonexistent/bin/python9\nprint('never')\n")
    script.chmod(0o755)
    run = dep.up()
    assert run.returncode == 1, run.describe()
    assert f"interpreter '/nonexistent/bin/python9' of '{script}' not found" in run.stderr, \
        run.describe()


def test_a_huge_environment_is_rejected_by_validation(deployment):
    big = "".join(f'VAR{i} = "{"z" * 60000}"\n' for i in range(20))  # 1.2 MB
    dep = deployment(f"""
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]

[services.web.env]
{big}
[services.web.health]
kind = "none"
""")
    for command in ("validate", "up"):
        run = dep.deployctl(command, str(dep.spec_path))
        assert run.returncode == 2, run.describe()
        assert re.search(r"deploy\.toml:\d+:\d+: services\.web\.env: command and env take \d+ "
                         r"bytes per process; at most 1048576", run.stderr), run.describe()
        assert run.seconds < 5
    huge = dep.spec_path.read_text().replace("VAR0 = \"", "VAR0 = \"" + "z" * 140000)
    dep.spec_path.write_text(huge)
    run = dep.deployctl("validate", str(dep.spec_path))
    assert run.returncode == 2 and "services.web.env.VAR0: this variable is" in run.stderr, \
        run.describe()
