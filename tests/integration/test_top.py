"""`deployctl top` in a real terminal: a detached tmux session of 80x24 on a private tmux
server (-L), driven with send-keys and read with capture-pane. It shows the replicas, follows a
scale from 2 to 6, sorts, selects, shows a log tail, fits a resized window and quits on `q`;
piped, it prints one plain-text snapshot."""
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import all_ready, deployctl_bin, wait_until

TMUX = shutil.which("tmux")

SPEC = """
name = "@NAME@"

[services.web]
command = ["/bin/sh", "-c", "echo log-line-of-$$; exec sleep 600"]
replicas = 2

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "1s"
"""


class Tmux:
    """A tmux server of our own (its own -L socket), one session running `command`."""

    def __init__(self, command: list[str], env: dict, width: int = 80, height: int = 24):
        self.socket = f"dctl-top-{uuid.uuid4().hex[:12]}"
        self.env = {**env, "TERM": "xterm-256color"}
        shell_command = " ".join(shlex.quote(part) for part in command)
        self.tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                  shell_command)
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").stdout.strip()

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=10)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top").stdout

    def keys(self, *keys: str) -> None:
        assert self.tmux("send-keys", "-t", "top", *keys).returncode == 0

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", "top").returncode == 0

    def wait_for(self, predicate, what: str, timeout: float = 15) -> str:
        """The screen once `predicate(screen)` holds (bounded by `timeout`)."""
        try:
            return wait_until(lambda: (lambda s: predicate(s) and s)(self.screen()), timeout,
                              what)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; the screen:\n{self.screen()}") from None

    def close(self) -> None:
        """Stops the server (and top with it) and removes its socket file."""
        self.tmux("kill-server")
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def tmux_session():
    if TMUX is None:
        pytest.fail("tmux is missing: run packaging/install-deps.sh", pytrace=False)
    sessions = []

    def start(command, env, **size):
        session = Tmux(command, env, **size)
        sessions.append(session)
        return session
    yield start
    for session in sessions:
        session.close()


def selected(screen: str) -> str | None:
    """The id of the row marked with '>'."""
    for line in screen.splitlines():
        if line.startswith("> "):
            return line.split()[1]
    return None


def test_top_in_tmux_follows_a_scale_and_obeys_its_keys(deployment, tmux_session):
    dep = deployment(SPEC, name="top")
    assert dep.up().returncode == 0
    status = dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    pids = dep.replica_pids(status)
    term = tmux_session([deployctl_bin(), "top", "--name", dep.name], dep.env)

    # Waits for the whole first screen: capture-pane may catch ncurses half-way through a draw.
    screen = term.wait_for(lambda s: "web.0" in s and "web.1" in s and "-- events --" in s,
                           "both replicas and the events")
    lines = screen.splitlines()
    assert lines[0].startswith("top: running  pid ") and "sort:name" in lines[0], screen
    assert lines[1].startswith("web  2/2 ready"), screen
    assert "REPLICA" in lines[2] and "MEMORY" in lines[2], screen
    assert selected(screen) == "web.0"
    assert "-- events --" in screen

    # The view follows a scale from 2 to 6, refreshing on its own.
    scale = dep.scale(web=6)
    assert scale.returncode == 0, scale.describe()
    screen = term.wait_for(lambda s: "web  6/6 ready" in s and "web.5" in s, "6 replicas")
    assert "scale web: desired replicas 2 -> 6" in screen

    # s cycles the sort; it comes back to name after four presses.
    for name in ("cpu", "memory", "restarts", "name"):
        term.keys("s")
        term.wait_for(lambda s, name=name: f"sort:{name} " in s, f"sort:{name}")

    # Arrows move the selection, clamped at the top.
    term.keys("Down")
    term.wait_for(lambda s: selected(s) == "web.1", "web.1 selected")
    term.keys("Down", "Down", "Up")
    term.wait_for(lambda s: selected(s) == "web.2", "web.2 selected")
    term.keys("Up", "Up", "Up")
    term.wait_for(lambda s: selected(s) == "web.0", "back at web.0")
    term.keys("Down")
    term.wait_for(lambda s: selected(s) == "web.1", "web.1 selected again")

    # l shows the selected replica's log tail; Esc and l go back.
    term.keys("l")
    screen = term.wait_for(lambda s: f"log-line-of-{pids['web.1']}" in s, "web.1's log line")
    assert screen.splitlines()[0].startswith("web.1 log"), screen
    assert f"log-line-of-{pids['web.0']}" not in screen
    term.keys("Escape")
    term.wait_for(lambda s: "REPLICA" in s and selected(s) == "web.1", "the table after Esc")
    term.keys("l")
    term.wait_for(lambda s: s.startswith("web.1 log"), "the log again")
    term.keys("l")
    term.wait_for(lambda s: "REPLICA" in s, "the table after l")

    # A smaller window (SIGWINCH): the title drops its key help, rows still fit.
    assert term.tmux("resize-window", "-t", "top", "-x", "60", "-y", "12").returncode == 0
    screen = term.wait_for(lambda s: "q quit" not in s and "sort:name" in s, "the 60x12 layout")
    assert all(len(line) <= 60 for line in screen.splitlines()), screen
    assert selected(screen) == "web.1", screen

    term.keys("q")
    wait_until(lambda: not term.alive(), 10, "top to quit on q")


def test_top_piped_prints_one_plain_snapshot(deployment):
    dep = deployment(SPEC, name="top")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    run = dep.deployctl("top", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    assert "\x1b" not in run.stdout
    lines = run.stdout.splitlines()
    assert lines[0].startswith("top: running  pid "), run.stdout
    assert "q quit" not in lines[0]
    assert lines[1] == "web  2/2 ready"
    rows = [line for line in lines if line.startswith("  web.")]
    assert [row.split()[0] for row in rows] == ["web.0", "web.1"], run.stdout
    assert all(row.split()[1] == "ready" for row in rows)
    by_file = dep.deployctl("top", str(dep.spec_path))
    assert by_file.returncode == 0 and by_file.stdout.splitlines()[1] == "web  2/2 ready"


def test_top_of_a_deployment_that_is_not_running_exits_3(deployment):
    dep = deployment(SPEC, name="top")
    run = dep.deployctl("top", "--name", dep.name)
    assert run.returncode == 3, run.describe()
    assert "is not running" in run.stderr, run.describe()
