"""`deployctl events`: the history, and `-f` following a kill, its restart and a scale in
order as they happen."""
import json
import re
import os
import signal
import subprocess
import threading

from harness import all_ready, deployctl_bin, replaced, sleepers, wait_until


class Follower:
    """`deployctl events -f --json` in the background; its lines, parsed, in `events`."""

    def __init__(self, dep):
        self.process = subprocess.Popen([deployctl_bin(), "events", "-f", "--json", "--name",
                                         dep.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env=dep.env, cwd=dep.dir,
                                        text=True)
        self.events: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def index(self, predicate, after: int = -1) -> int | None:
        for i, event in enumerate(list(self.events)):
            if i > after and predicate(event):
                return i
        return None

    def wait_for(self, predicate, after: int = -1, what: str = "an event") -> int:
        return wait_until(lambda: self.index(predicate, after), 15,
                          f"{what} after #{after} in {self.events}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        return self.process.stderr.read()


def test_events_follow_shows_a_kill_the_restart_and_a_scale_in_order(deployment):
    dep = deployment(sleepers(2), name="events")
    assert dep.up().returncode == 0
    status = dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    follower = Follower(dep)
    try:
        # The history comes first: both replicas became ready at the start.
        follower.wait_for(lambda e: e["kind"] == "state" and e["replica"] == "web.1" and
                          e["message"].startswith("starting -> ready"), what="web.1 ready")
        start = len(follower.events) - 1
        victim = status["services"][0]["replicas"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed = follower.wait_for(
            lambda e: e["kind"] == "exit" and e["replica"] == victim["id"] and
            e["message"] == "signal 9 (SIGKILL), reason signal", after=start, what="the kill")
        restarted = follower.wait_for(
            lambda e: e["kind"] == "state" and e["replica"] == victim["id"] and
            e["message"].endswith("-> ready (ready)"), after=killed, what="the restart")
        dep.wait_for(lambda s: replaced(s, victim["id"], victim["pid"]) and all_ready(s, 2),
                     what="the killed replica replaced")
        assert dep.scale(web=3).returncode == 0
        scaled = follower.wait_for(
            lambda e: e["kind"] == "scale" and e["service"] == "web" and
            e["message"] == "desired replicas 2 -> 3", after=restarted, what="the scale")
        follower.wait_for(lambda e: e["kind"] == "state" and e["replica"] == "web.2" and
                          e["message"].startswith("starting -> ready"), after=scaled,
                          what="web.2 ready")
        times = [follower.events[i]["time_ms"] for i in (killed, restarted, scaled)]
        assert times == sorted(times)
    finally:
        errors = follower.stop()
    assert errors == ""


def test_events_history_as_text_and_json(deployment):
    dep = deployment(sleepers(1), name="events")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 1), what="a ready replica")
    text = dep.deployctl("events", str(dep.spec_path))
    assert text.returncode == 0, text.describe()
    assert any(" state web.0: starting -> ready" in line for line in text.stdout.splitlines()), \
        text.stdout
    as_json = dep.deployctl("events", "--json", str(dep.spec_path))
    assert as_json.returncode == 0, as_json.describe()
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert {"state", "log"} <= {e["kind"] for e in events}


def test_events_show_each_pre_start_step_of_up(deployment):
    spec = sleepers(1).replace('name = "@NAME@"\n', 'name = "@NAME@"\n\n[[pre_start]]\n'
                               'name = "check"\ncommand = ["true"]\n', 1)
    assert "[[pre_start]]" in spec
    dep = deployment(spec, name="events")
    assert dep.up().returncode == 0
    listed = dep.deployctl("events", "--json", str(dep.spec_path))
    steps = [json.loads(line) for line in listed.stdout.splitlines()]
    steps = [e for e in steps if e["kind"] == "pre_start"]
    assert len(steps) == 1, listed.stdout
    assert re.fullmatch(r"step check: ok in \d+ms", steps[0]["message"]), steps

