"""deployctl core benchmark: recovery after kill -9, startup time, supervisor footprint, scale time.

Run (stdlib only, from anywhere):

    /usr/bin/python3 tests/bench/core_bench.py [--quick] [--json OUT] [--bin DIR]

  --bin DIR   where `deployctl` and `deploy-server` are (default: build/bin under the repo root)
  --json OUT  also write every sample and summary as JSON to OUT
  --quick     fewer runs and shorter windows: under 60 s instead of under 3 minutes

Every deployment runs deploy-server replicas on one shared 127.0.0.1 port, in a private
temp dir with its own DEPLOYCTL_RUNTIME_DIR. Measured:

1. recovery: 4 replicas; `kill -9` one (a different index each time) and time until
   `status --json` shows that index `ready` with a new pid (status polled back to back, ~2 ms
   apart). The supervisor's own view comes from STATE/supervisor.log: "exited" line -> "ready"
   line, and our kill (wall clock) -> the "exited" line. The spec sets `reset_after = 500ms`
   and each kill waits until its replica has run longer than that, so every kill hits a stable
   replica (the immediate-restart path), not the backoff of a crash loop.
2. startup: `deployctl up -d` (returns once every replica is ready) with 8 and with 1
   replica, `down` between runs.
3. footprint: supervisor RSS/PSS (/proc/PID/smaps_rollup) and CPU (utime+stime, % of one core)
   over an idle window with 4 and with 100 replicas, health interval 1s; the time of
   `scale web=100` and of `scale web=1`.

Every wait is bounded. Every deployment is brought down with `deployctl down`, then any
process it started that is still alive (found by an environment tag) is killed by pid.
Exit status: 0 if every section ran, 1 if one failed (its error is printed and in the JSON).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_util import CLK_TCK, TAG_VARIABLE, has_tag, is_alive, memory_kib, proc_stat
from bench_util import tagged_pids

NAME = "bench"
RESET_AFTER_MS = 500  # backoff.reset_after of the bench spec: a run this long counts as stable
STATUS_POLL_GAP = 0.002  # seconds between the end of one `status` and the start of the next


class BenchError(Exception):
    """A section could not measure what it should; the message says what happened."""


# --- settings -----------------------------------------------------------------------------

def settings(quick: bool) -> dict:
    return {"kills": 5 if quick else 20, "startup_runs": 3 if quick else 10,
            "idle_window_s": 3.0 if quick else 10.0, "recovery_replicas": 4,
            "startup_replicas": [1, 8], "footprint_small": 4, "footprint_large": 100}


def wait_gone(pids, timeout: float) -> list[int]:
    """Waits until none of `pids` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if is_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


# --- numbers ------------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values),
            "p90": percentile(values, 0.9), "min": min(values), "max": max(values)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- one private deployment ---------------------------------------------------------------

SPEC = """\
name = "{name}"

[services.web]
command = [{server}]
replicas = {replicas}
listen = ["127.0.0.1:{port}"]

[services.web.health]
interval = "1s"

[services.web.restart]
backoff = {{ initial = "100ms", max = "30s", reset_after = "{reset_after}ms" }}
crash_loop = {{ restarts = 1000, within = "60s" }}

[services.web.stop]
timeout = "5s"
"""

LOG_LINE = re.compile(r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] \[\w+\] "
                      r"(?P<id>web\.\d+) (?:\(pid (?P<pid>\d+)\) (?P<event>exited|ready after)"
                      r"|(?P<started>started) \(pid (?P<spid>\d+)\))")


class Deployment:
    """One deployment of `replicas` deploy-servers in its own temp dir and runtime dir. Owns
    every process its deployctl calls start; close() brings them down and kills leftovers."""

    def __init__(self, bin_dir: Path, replicas: int):
        self.deployctl_bin = str(bin_dir / "deployctl")
        self.dir = Path(tempfile.mkdtemp(prefix="dbench-"))  # short: unix socket paths are limited
        self.state_dir = self.dir / "run" / NAME
        self.spec_path = self.dir / "deploy.toml"
        self.port = free_port()
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, "DEPLOYCTL_RUNTIME_DIR": str(self.dir / "run"),
                    TAG_VARIABLE: self.tag}
        self.spec_path.write_text(SPEC.format(
            name=NAME, server=json.dumps(str(bin_dir / "deploy-server")), replicas=replicas,
            port=self.port, reset_after=RESET_AFTER_MS))
        self.supervisor_pid: int | None = None

    def deployctl(self, *args: str, timeout: float = 30.0) -> tuple[int, str, float]:
        """Runs `deployctl ARGS`; returns (exit code, stdout + stderr, seconds). Output goes to
        a file: a daemon keeping our fds open cannot hang us."""
        with tempfile.TemporaryFile(dir=self.dir) as output:
            started = time.monotonic()
            process = subprocess.Popen([self.deployctl_bin, *args], stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT, env=self.env,
                                       cwd=self.dir)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
                raise BenchError(f"`deployctl {' '.join(args)}` did not exit within {timeout}s")
            seconds = time.monotonic() - started
            output.seek(0)
            return process.returncode, output.read().decode(errors="replace"), seconds

    def checked(self, *args: str, timeout: float = 30.0) -> tuple[str, float]:
        code, text, seconds = self.deployctl(*args, timeout=timeout)
        if code != 0:
            raise BenchError(f"`deployctl {' '.join(args)}` exited {code}:\n{text.strip()}\n"
                             f"{self.log_tail()}")
        return text, seconds

    def up(self) -> tuple[str, float]:
        text, seconds = self.checked("up", "-d", str(self.spec_path), timeout=60)
        self.supervisor_pid = self.status()["pid"]
        return text, seconds

    def status(self) -> dict:
        """`status --json` (pipes are fine: status starts no daemon)."""
        run = subprocess.run([self.deployctl_bin, "status", "--json", "--name", NAME],
                             capture_output=True, env=self.env, timeout=10)
        if run.returncode != 0:
            raise BenchError(f"`deployctl status --json` exited {run.returncode}: "
                             f"{run.stderr.decode(errors='replace').strip()}\n{self.log_tail()}")
        return json.loads(run.stdout)

    def replicas(self, status: dict) -> dict[int, dict]:
        return {r["index"]: r for s in status["services"] for r in s["replicas"]}

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() >= deadline:
                raise BenchError(f"timed out after {timeout}s waiting for {what}; last status:\n"
                                 f"{json.dumps(status)}\n{self.log_tail()}")
            time.sleep(0.02)

    def all_ready(self, count: int, timeout: float = 60.0) -> dict:
        def ready(status):
            replicas = [r for r in self.replicas(status).values() if r["pid"] is not None]
            return len(replicas) == count and all(r["state"] == "ready" for r in replicas)
        return self.wait_for(ready, timeout, f"{count} ready replicas")

    def down(self) -> float:
        _, seconds = self.checked("down", "--name", NAME, timeout=30)
        if self.supervisor_pid and wait_gone([self.supervisor_pid], 5.0):
            raise BenchError(f"supervisor pid {self.supervisor_pid} still alive 5s after down")
        self.supervisor_pid = None
        return seconds

    def log_text(self) -> str:
        path = self.state_dir / "supervisor.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "--- supervisor.log (tail)\n" + "\n".join(tail) if tail else ""

    def close(self) -> list[str]:
        """`down` if anything may run, then SIGKILL by pid whatever this deployment started that
        survived it. Returns what had to be killed (a leak worth reporting)."""
        problems = []
        if tagged_pids(self.tag):
            try:
                code, text, _ = self.deployctl("down", "--name", NAME, timeout=30)
                if code not in (0, 3):
                    problems.append(f"down at cleanup exited {code}: {text.strip()}")
            except BenchError as error:
                problems.append(f"down at cleanup: {error}")
        leftovers = tagged_pids(self.tag)
        if leftovers:
            leftovers = wait_gone(leftovers, 1.0)
        for pid in leftovers:
            problems.append(f"still running after down, killed: pid {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


# --- 1. recovery --------------------------------------------------------------------------

def log_time(text: str) -> float:
    """A spdlog timestamp (local time, ms) as seconds since the epoch."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def log_events(log: str) -> dict[tuple[str, int], float]:
    """(event, pid) -> time for each `exited`, `ready after` and `started` log line."""
    events = {}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        if match["started"]:
            events[("started", int(match["spid"]))] = log_time(match["time"])
        else:
            events[(match["event"], int(match["pid"]))] = log_time(match["time"])
    return events


def stable_target(deployment: Deployment, index: int, replicas: int) -> dict:
    """Waits until every replica is ready and `index` has run longer than reset_after."""
    def settled(status):
        by_index = deployment.replicas(status)
        target = by_index.get(index)
        return (len(by_index) == replicas and all(r["state"] == "ready" for r in by_index.values())
                and target["uptime_ms"] is not None
                and target["uptime_ms"] > RESET_AFTER_MS + 100)
    return deployment.replicas(deployment.wait_for(settled, 10.0, f"web.{index} stable"))[index]


def kill_replica(deployment: Deployment, replica: dict) -> None:
    pid = replica["pid"]
    if not has_tag(pid, deployment.tag):  # never kill what this deployment did not start
        raise BenchError(f"pid {pid} of {replica['id']} is not a process of this bench")
    os.kill(pid, signal.SIGKILL)


def time_one_recovery(deployment: Deployment, index: int, replicas: int) -> dict:
    """Kills web.INDEX and polls status back to back until it is ready with a new pid."""
    target = stable_target(deployment, index, replicas)
    old_pid, polls = target["pid"], []
    killed_wall, killed = time.time(), time.monotonic()
    kill_replica(deployment, target)
    deadline = killed + 10.0
    while True:
        poll_start = time.monotonic()
        replica = deployment.replicas(deployment.status()).get(index)
        now = time.monotonic()
        polls.append(now - poll_start)
        if replica and replica["state"] == "ready" and replica["pid"] not in (None, old_pid):
            return {"index": index, "old_pid": old_pid, "new_pid": replica["pid"],
                    "killed_wall": killed_wall, "status_ms": (now - killed) * 1000,
                    "polls": len(polls), "poll_ms": statistics.median(polls) * 1000}
        if now >= deadline:
            raise BenchError(f"web.{index} not ready with a new pid 10s after kill -9 of "
                             f"{old_pid}: {json.dumps(replica)}\n{deployment.log_tail()}")
        time.sleep(STATUS_POLL_GAP)


def add_log_view(deployment: Deployment, kills: list[dict]) -> None:
    """Adds the supervisor log's exit -> ready and kill -> exit times to each kill."""
    deadline = time.monotonic() + 5.0
    while True:
        events = log_events(deployment.log_text())
        missing = [k for k in kills if ("exited", k["old_pid"]) not in events
                   or ("ready after", k["new_pid"]) not in events]
        if not missing:
            break
        if time.monotonic() >= deadline:
            raise BenchError(f"supervisor.log lacks the exit/ready lines of {missing[0]}\n"
                             f"{deployment.log_tail()}")
        time.sleep(0.05)
    for kill in kills:
        exited = events[("exited", kill["old_pid"])]
        kill["log_exit_to_ready_ms"] = (events[("ready after", kill["new_pid"])] - exited) * 1000
        kill["log_exit_to_started_ms"] = (events[("started", kill["new_pid"])] - exited) * 1000
        kill["kill_to_log_exit_ms"] = (exited - kill["killed_wall"]) * 1000


def measure_recovery(bin_dir: Path, config: dict) -> dict:
    replicas = config["recovery_replicas"]
    deployment = Deployment(bin_dir, replicas)
    try:
        deployment.up()
        kills = [time_one_recovery(deployment, n % replicas, replicas)
                 for n in range(config["kills"])]
        add_log_view(deployment, kills)
        restarts = sum(r["restarts"] for r in deployment.replicas(deployment.status()).values())
        deployment.down()
    finally:
        cleanup = deployment.close()
    return {"replicas": replicas, "kills": kills, "restarts_counted": restarts,
            "status_ms": summary([k["status_ms"] for k in kills]),
            "log_exit_to_ready_ms": summary([k["log_exit_to_ready_ms"] for k in kills]),
            "log_exit_to_started_ms": summary([k["log_exit_to_started_ms"] for k in kills]),
            "kill_to_log_exit_ms": summary([k["kill_to_log_exit_ms"] for k in kills]),
            "status_poll_ms": summary([k["poll_ms"] for k in kills]), "cleanup": cleanup}


# --- 2. startup ---------------------------------------------------------------------------

UP_IN = re.compile(r" is up in (\d+)ms")


def measure_startup_of(bin_dir: Path, replicas: int, runs: int) -> dict:
    deployment = Deployment(bin_dir, replicas)
    up_ms, internal_ms, down_ms = [], [], []
    try:
        for _ in range(runs):
            text, seconds = deployment.up()
            up_ms.append(seconds * 1000)
            reported = UP_IN.search(text)
            if reported:
                internal_ms.append(float(reported[1]))
            deployment.all_ready(replicas, timeout=5.0)  # `up -d` returned: all must be ready
            down_ms.append(deployment.down() * 1000)
    finally:
        cleanup = deployment.close()
    return {"replicas": replicas, "runs": runs, "up_ms": summary(up_ms),
            "up_samples_ms": up_ms, "supervisor_up_in_ms": summary(internal_ms),
            "down_ms": summary(down_ms), "cleanup": cleanup}


def measure_startup(bin_dir: Path, config: dict) -> dict:
    return {str(n): measure_startup_of(bin_dir, n, config["startup_runs"])
            for n in config["startup_replicas"]}


# --- 3. footprint and scale ---------------------------------------------------------------

def idle_window(pid: int, seconds: float) -> dict:
    """Supervisor CPU over `seconds` of nobody talking to it, then its memory. The window is
    the measurement itself, so it is a timed wait; it stops early if the supervisor dies."""
    before, started = proc_stat(pid), time.monotonic()
    while time.monotonic() - started < seconds:
        if not is_alive(pid):
            raise BenchError(f"supervisor pid {pid} died during the idle window")
        time.sleep(0.1)
    after, elapsed = proc_stat(pid), time.monotonic() - started
    ticks = after["cpu_ticks"] - before["cpu_ticks"]
    return {"window_s": elapsed, "cpu_ticks": ticks,
            "cpu_percent": ticks / CLK_TCK / elapsed * 100, **memory_kib(pid)}


def replicas_rss_kib(deployment: Deployment) -> int:
    replicas = deployment.replicas(deployment.status()).values()
    return sum((r["rss_bytes"] or 0) for r in replicas) // 1024


def scale_to(deployment: Deployment, count: int) -> float:
    _, seconds = deployment.checked("scale", f"web={count}", "--name", NAME, timeout=90)
    deployment.all_ready(count, timeout=10.0)  # scale returned: the count must be reached
    return seconds * 1000


def measure_footprint(bin_dir: Path, config: dict) -> dict:
    small, large, window = config["footprint_small"], config["footprint_large"], \
        config["idle_window_s"]
    deployment = Deployment(bin_dir, small)
    try:
        deployment.up()
        pid = deployment.supervisor_pid
        at_small = {**idle_window(pid, window), "replicas_rss_kib": replicas_rss_kib(deployment)}
        scale_up_ms = scale_to(deployment, large)
        at_large = {**idle_window(pid, window), "replicas_rss_kib": replicas_rss_kib(deployment)}
        scale_down_ms = scale_to(deployment, 1)
        at_one = {**memory_kib(pid), "replicas_rss_kib": replicas_rss_kib(deployment)}
        deployment.down()
    finally:
        cleanup = deployment.close()
    return {"health_interval_s": 1, "at": {str(small): at_small, str(large): at_large,
                                           "1 (after scale down)": at_one},
            "scale_ms": {f"{small}->{large}": scale_up_ms, f"{large}->1": scale_down_ms},
            "cleanup": cleanup}


# --- report -------------------------------------------------------------------------------

def row(label: str, stats: dict, keys=("median", "p90", "max")) -> str:
    cells = "".join(f"{stats[k]:>9.1f}" if k in stats else f"{'-':>9}" for k in keys)
    return f"  {label:<40}{cells}"


def print_recovery(result: dict) -> None:
    print(f"recovery: kill -9 of one of {result['replicas']} replicas until that index is "
          f"ready again ({len(result['kills'])} kills), ms")
    print(f"  {'':<40}{'median':>9}{'p90':>9}{'max':>9}")
    print(row("kill -> status ready, new pid (poll)", result["status_ms"]))
    print(row("exit -> ready (supervisor.log)", result["log_exit_to_ready_ms"]))
    print(row("  of which exit -> new pid started", result["log_exit_to_started_ms"]))
    print(row("kill -> exit logged (clock vs log)", result["kill_to_log_exit_ms"]))
    print(f"  status --json takes {result['status_poll_ms']['median']:.1f} ms (median), polled "
          f"every {STATUS_POLL_GAP * 1000:.0f} ms after the previous one returned: that is the "
          f"poll's resolution; log times have 1 ms resolution")
    print(f"  restarts counted by the supervisor: {result['restarts_counted']} "
          f"(one per kill expected)")


def print_startup(result: dict) -> None:
    print("startup: `deployctl up -d` until it returns (all replicas ready), ms")
    print(f"  {'':<24}{'median':>9}{'max':>9}{'sup. says':>11}{'down med':>10}")
    for replicas, data in result.items():
        label = f"{replicas} replica{'s' if replicas != '1' else ''} ({data['runs']} runs)"
        internal = data["supervisor_up_in_ms"].get("median")
        internal_text = f"{internal:>11.1f}" if internal is not None else f"{'-':>11}"
        print(f"  {label:<24}{data['up_ms']['median']:>9.1f}{data['up_ms']['max']:>9.1f}"
              f"{internal_text}{data['down_ms']['median']:>10.1f}")
    print("  (sup. says: the supervisor's own `is up in Xms`; down med: `down` median)")


def print_footprint(result: dict) -> None:
    print("footprint: the supervisor process, health interval 1s, idle window after up/scale")
    print(f"  {'replicas':<22}{'RSS KiB':>10}{'PSS KiB':>10}{'CPU %core':>11}{'window s':>10}"
          f"{'replicas RSS MiB':>18}")
    for label, data in result["at"].items():
        cpu = f"{data['cpu_percent']:>11.2f}" if "cpu_percent" in data else f"{'-':>11}"
        window = f"{data['window_s']:>10.1f}" if "window_s" in data else f"{'-':>10}"
        print(f"  {label:<22}{data['rss_kib']:>10}{data['pss_kib']:>10}{cpu}{window}"
              f"{data['replicas_rss_kib'] / 1024:>18.1f}")
    print(f"  CPU resolution: 1 tick = {1000 / CLK_TCK:.0f} ms")
    for label, ms in result["scale_ms"].items():
        print(f"scale web {label.replace('->', ' -> ')}: {ms:.1f} ms until `scale` returned")


PRINTERS = {"recovery": print_recovery, "startup": print_startup, "footprint": print_footprint}


def print_report(report: dict) -> None:
    meta = report["meta"]
    print(f"deployctl core benchmark: {meta['bin']}  ({meta['cpus']} CPUs, load "
          f"{meta['load_before']}, {'quick' if meta['quick'] else 'full'} run)")
    for section, printer in PRINTERS.items():
        print()
        if "error" in report[section]:
            print(f"{section}: FAILED: {report[section]['error']}")
            continue
        printer(report[section])
        for problem in report[section].get("cleanup", []):
            print(f"  cleanup: {problem}")
    print(f"\ntotal {meta['seconds']:.1f} s")


# --- main ---------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--bin", type=Path, metavar="DIR",
                        default=Path(__file__).resolve().parents[2] / "build" / "bin",
                        help="directory of deployctl and deploy-server (default build/bin)")
    return parser.parse_args()


def check_binaries(bin_dir: Path) -> None:
    for name in ("deployctl", "deploy-server"):
        if not os.access(bin_dir / name, os.X_OK):
            sys.exit(f"core_bench: {bin_dir / name} is not an executable file: build it "
                     f"(cmake --build ...) or pass --bin DIR")


def run_sections(bin_dir: Path, config: dict) -> dict:
    sections = {"recovery": measure_recovery, "startup": measure_startup,
                "footprint": measure_footprint}
    results = {}
    for name, measure in sections.items():
        try:
            results[name] = measure(bin_dir, config)
        except (BenchError, OSError, subprocess.SubprocessError, ValueError) as error:
            results[name] = {"error": str(error)}
    return results


def main() -> int:
    args = parse_args()
    bin_dir = args.bin.resolve()
    check_binaries(bin_dir)
    # SIGTERM unwinds like Ctrl+C, so every deployment's cleanup runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = settings(args.quick)
    started = time.monotonic()
    meta = {"bin": str(bin_dir), "quick": args.quick, "cpus": os.cpu_count(),
            "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "kernel": platform.release(), "settings": config,
            "reset_after_ms": RESET_AFTER_MS, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        report = run_sections(bin_dir, config)
    except KeyboardInterrupt:
        print("core_bench: interrupted; every deployment started so far was cleaned up",
              file=sys.stderr)
        return 130
    meta["seconds"] = time.monotonic() - started
    report = {"meta": meta, **report}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any("error" in report[s] for s in PRINTERS) else 0


if __name__ == "__main__":
    sys.exit(main())
