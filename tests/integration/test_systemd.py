"""systemd integration: the supervisor's own sd_notify messages, received for real on a datagram
socket the test owns (NOTIFY_SOCKET), watchdog included; and the unit file passes
`systemd-analyze verify`. (PID 1 here is not systemd: the unit is verified, not started.)"""
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import deployctl_bin, source_dir, wait_until

SERVED = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "2s"
"""


class NotifyListener:
    """A datagram socket standing in for systemd's notify socket; records what arrives."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []

    def pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError, socket.timeout):
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, line: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            for at, message in self.messages:
                if line in message.splitlines():
                    return at
        raise AssertionError(f"no {line!r} among {[m for _, m in self.messages]}")


def test_ready_status_watchdog_reloading_and_stopping(deployment):
    dep = deployment(SERVED)
    listener = NotifyListener(dep.dir)
    dep.env = {**dep.env, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"}
    foreground = dep.up_foreground()
    listener.wait_for("READY=1")
    listener.wait_for("STATUS=web 2/2 ready")
    # The watchdog is kept from the event loop at half of WATCHDOG_USEC (100 ms).
    start = time.monotonic()
    while time.monotonic() - start < 0.6:
        listener.pump()
    beats = [at for at, m in listener.messages if m == "WATCHDOG=1" and at >= start]
    assert len(beats) >= 3, listener.messages

    dep.write_spec(SERVED.replace("replicas = 2", "replicas = 3"))
    run = dep.deployctl("reload", str(dep.spec_path), timeout=30)
    assert run.returncode == 0, run.describe()
    reloading_at = listener.wait_for("RELOADING=1")
    listener.wait_for("STATUS=web 3/3 ready")
    assert any(at > reloading_at and "READY=1" in m.splitlines() for at, m in listener.messages)

    foreground.send_signal(signal.SIGTERM)
    listener.wait_for("STOPPING=1")
    assert foreground.wait(15) == 0
    listener.sock.close()


def test_replicas_do_not_inherit_the_supervisors_notify_socket(deployment):
    dep = deployment(SERVED)
    listener = NotifyListener(dep.dir)
    dep.env = {**dep.env, "NOTIFY_SOCKET": listener.path}
    dep.up_foreground()
    listener.wait_for("READY=1")
    wait_until(lambda: len(dep.replica_pids()) == 2, 10, "both replicas run")
    for pid in dep.replica_pids().values():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"NOTIFY_SOCKET={listener.path}".encode() not in environ
    listener.sock.close()


def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    unit = (source_dir() / "systemd" / "deployctl@.service").read_text()
    assert "ExecStart=/usr/bin/deployctl up /etc/deployctl/%i.toml" in unit
    # The unit names the installed binary; verify checks it exists, so point it at this build.
    instance = tmp_path / "deployctl@example.service"
    instance.write_text(unit.replace("/usr/bin/deployctl", deployctl_bin()))
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "deployctl@example.service" in line]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr
