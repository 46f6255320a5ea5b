"""The FastAPI scenario of the peer benchmark (`peers.py --only fastapi`): the same app
(config/examples/fastapi/main.py, GET / returns a small JSON), 4 processes each way, on
127.0.0.1:

  under deployctl, 4 replicas on its one socket (fd 3), http health on /healthz:
    uvicorn (asyncio + h11), uvicorn-std (uvloop + httptools), gunicorn-uw (gunicorn with one
    UvicornWorker per replica, socket activation), hypercorn (--bind fd://3), daphne (--fd 3),
    and uvicorn-std again with rollout.max_surge = 4 (the old replicas stopped together), and
    with sockets = "per-replica" (a SO_REUSEPORT socket each, steered away before a stop)
  what users run today: gunicorn -k uvicorn.workers.UvicornWorker -w 4,
    uvicorn --workers 4, hypercorn -w 4

Access logs are off everywhere (uvicorn --no-access-log, daphne -v 0; gunicorn and hypercorn
log no access by default), so every side does the same work per request. Every side runs at
once; the throughput runs go round-robin, `runs` times, the order rotating each round, so drift
in the machine's load hits all alike. Figures:

- throughput: wrk -t2 -c32 --latency, keep-alive and with `Connection: close`: req/s, p50, p99
  (medians of the runs), and wrk's errors;
- rolling restart under keep-alive load (and under `Connection: close` load): wrk's errors and
  the longest window in which fresh connections (one every ~2 ms) got no answer. deployctl:
  `deployctl restart web`; gunicorn: SIGHUP (its own graceful reload). uvicorn 0.17 and
  hypercorn 0.13 have no rolling restart of their workers: not measured;
- kill -9 of one process under `Connection: close` load: wrk's errors, the client connections
  the process held when killed (each error is one of them), and the time until a new process
  answers GET / (the app returns its pid); uvicorn --workers and hypercorn -w do
  not replace a dead worker (measured as "never" within the window);
- memory: RSS and PSS summed over every process of the side (supervisor included).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench_util import (TAG_VARIABLE, BenchError, free_base_port, is_alive, probe_gaps,
                        kill_tree_and_tag, memory_kib, parse_wrk, reap_orphans,
                        server_connections, signal_all, tagged_pids, tree, wait_until)

HERE = Path(__file__).resolve().parent
APP_DIR = HERE.parents[1] / "config" / "examples" / "fastapi"
PYTHON = "/usr/bin/python3"  # Debian's FastAPI and servers import only under it
PROCESSES = 4
UVICORN = [PYTHON, "-m", "uvicorn", "main:app", "--no-access-log"]
GUNICORN_UW = [PYTHON, "-m", "gunicorn", "main:app", "-k", "uvicorn.workers.UvicornWorker"]

# side -> (command, same-server key); under deployctl the command runs once per replica on fd 3
DEPLOYCTL_SIDES = {
    "deployctl+uvicorn": (UVICORN + ["--fd", "3", "--loop", "asyncio", "--http", "h11"],
                          "uvicorn-h11"),
    "deployctl+uvicorn-std": (UVICORN + ["--fd", "3", "--loop", "uvloop", "--http",
                                         "httptools"], "uvicorn-std"),
    "deployctl+gunicorn-uw": (GUNICORN_UW + ["-w", "1"], "uvicorn-std"),
    "deployctl+hypercorn": ([PYTHON, "-m", "hypercorn", "main:app", "--bind", "fd://3"],
                            "hypercorn"),
    "deployctl+daphne": ([PYTHON, "-m", "daphne", "-v", "0", "--fd", "3", "main:app"],
                         "daphne"),
    # The same as deployctl+uvicorn-std with [rollout] max_surge = 4: the 4 old replicas are
    # stopped together, so each keep-alive connection is closed once, not once per step.
    "deployctl+uvicorn-std surge=4": (UVICORN + ["--fd", "3", "--loop", "uvloop", "--http",
                                                 "httptools"], "uvicorn-std"),
    # The same as deployctl+uvicorn-std with sockets = "per-replica": a SO_REUSEPORT socket per
    # replica, connections steered away from a replica before its stop (docs/design-notes.md).
    "deployctl+uvicorn-std per-replica": (UVICORN + ["--fd", "3", "--loop", "uvloop", "--http",
                                                     "httptools"], "uvicorn-std"),
}
SURGE = {"deployctl+uvicorn-std surge=4": PROCESSES}  # rollout.max_surge; default 1
SOCKETS = {"deployctl+uvicorn-std per-replica": "per-replica"}  # default "shared"
# UvicornWorker and uvicorn's default loop pick uvloop + httptools where installed.
PEER_SIDES = {
    "gunicorn -w4 UvicornWorker": (GUNICORN_UW + ["-w", "4", "-b", "127.0.0.1:{port}"],
                                   "uvicorn-std"),
    "uvicorn --workers 4": (UVICORN + ["--host", "127.0.0.1", "--port", "{port}", "--workers",
                                       "4", "--loop", "uvloop", "--http", "httptools"],
                            "uvicorn-std"),
    "hypercorn -w 4": ([PYTHON, "-m", "hypercorn", "main:app", "-b", "127.0.0.1:{port}", "-w",
                        "4"], "hypercorn"),
}

DEPLOY_SPEC = """\
name = "{name}"

[services.web]
command = {command}
replicas = {replicas}
listen = ["127.0.0.1:{port}"]
sockets = "{sockets}"
env = {{ APP_DB = "app.db" }}

[services.web.health]
kind = "http"
path = "/healthz"

[services.web.stop]
timeout = "10s"

[services.web.rollout]
max_surge = {surge}
"""


def app_pids_answering(port: int, timeout: float = 0.5) -> int | None:
    """The pid in a 200 answer to GET / on a new connection, or None."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        return json.loads(body)["pid"] if response.status == 200 else None
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def is_deployctl(pid: int) -> bool:
    """The supervisor or its fd keeper (`deployctl __keeper`, whose comm is "exe")."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0) == b"deployctl"


class Side:
    """One way of running the app with PROCESSES processes, in its own temp dir with the
    app, a migrated database and an environment tag on every process it starts.

    Every side starts in a session of its own, as a server a user starts is, apart from the
    client's: with the kernel's autogroup scheduling (sched_autogroup_enabled, on unless
    systemd puts services in cpu cgroups), CPU is shared out per session first, so a server
    in wrk's own session shares wrk's slot while `deployctl up -d` (which calls setsid) has
    one of its own (docs/bench.md, "deployctl + gunicorn against gunicorn -w4")."""

    new_session = True

    def __init__(self, name: str, command: list[str], server: str, log_dir: Path):
        self.name, self.server = name, server
        self.dir = Path(tempfile.mkdtemp(prefix="pb-fastapi-"))
        for file in ("main.py", "migrate.py"):
            shutil.copy(APP_DIR / file, self.dir / file)
        self.port = free_base_port(1)
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, TAG_VARIABLE: self.tag, "APP_DB": "app.db",
                    "DEPLOYCTL_RUNTIME_DIR": str(self.dir / "run")}
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.log_path = log_dir / f"fastapi-{re.sub(r'[^A-Za-z0-9]+', '-', name)}.log"
        self.process: subprocess.Popen | None = None
        subprocess.run([PYTHON, "migrate.py"], cwd=self.dir, env=self.env, check=True,
                       capture_output=True, timeout=30)

    def launch(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
                                            start_new_session=self.new_session)

    def start(self) -> None:
        self.launch(self.command)

    def wait_ready(self, timeout: float) -> None:
        wait_until(lambda: self.app_pids() and app_pids_answering(self.port), timeout,
                   f"{self.name}: the app answering on port {self.port}", step=0.05)

    def all_pids(self) -> list[int]:
        return [pid for pid in tagged_pids(self.tag) if is_alive(pid)]

    def app_pids(self) -> list[int]:
        """The processes that run the app (and so answer requests)."""
        root = self.process.pid if self.process else None
        return [pid for pid in tree(root)[1:] if is_alive(pid)] if root else []

    def restart(self) -> None:
        """Its own rolling restart of every process, returning once it is done."""
        raise NotImplementedError

    def memory(self) -> dict:
        pids = self.all_pids()
        totals = {"processes": len(pids), "rss_kib": 0, "pss_kib": 0}
        for pid in pids:
            for key, value in memory_kib(pid).items():
                totals[key] += value
        return totals

    def close(self) -> list[str]:
        leaked = kill_tree_and_tag(self.process.pid if self.process else None, self.tag)
        if self.process:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                leaked.append(self.process.pid)
        reap_orphans()
        shutil.rmtree(self.dir, ignore_errors=True)
        return [f"{self.name}: pid {pid} outside its tree, killed" for pid in leaked]


class DeployctlSide(Side):
    deployctl_bin = "deployctl"

    def start(self) -> None:
        spec = DEPLOY_SPEC.format(name="fastapi", command=json.dumps(self.command),
                                  replicas=PROCESSES, port=self.port,
                                  surge=SURGE.get(self.name, 1),
                                  sockets=SOCKETS.get(self.name, "shared"))
        (self.dir / "deploy.toml").write_text(spec)
        self.launch([self.deployctl_bin, "up", "-d", str(self.dir / "deploy.toml")])

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        run = subprocess.run([self.deployctl_bin, *args, "--name", "fastapi"], env=self.env,
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if run.returncode:
            raise BenchError(f"{self.name}: deployctl {args[0]} exited {run.returncode}: "
                             f"{run.stderr.decode(errors='replace').strip()[-400:]}")
        return run.stdout.decode()

    def wait_ready(self, timeout: float) -> None:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name}: `deployctl up -d` still running after {timeout}s")
        if code:
            raise BenchError(f"{self.name}: `deployctl up -d` exited {code}; see "
                             f"{self.log_path}")
        wait_until(lambda: app_pids_answering(self.port), timeout, f"{self.name} answering")

    def replica_pids(self) -> list[int]:
        status = json.loads(self.ctl("status", "--json", timeout=30))
        return [r["pid"] for s in status["services"] for r in s["replicas"] if r["pid"]]

    def app_pids(self) -> list[int]:
        return [pid for pid in self.all_pids() if not is_deployctl(pid)]

    def restart(self) -> None:
        self.ctl("restart", "web")

    def close(self) -> list[str]:
        problems = []
        if self.all_pids():
            try:
                self.ctl("down", timeout=60)
            except (BenchError, subprocess.TimeoutExpired) as error:
                problems.append(str(error))
        return problems + super().close()


class GunicornSide(Side):
    def restart(self) -> None:
        """SIGHUP: gunicorn starts new workers, then gracefully stops the old ones."""
        old = set(self.app_pids())
        os.kill(self.process.pid, signal.SIGHUP)
        wait_until(lambda: len(set(self.app_pids()) - old) == PROCESSES
                   and not old & set(self.app_pids()), 60, f"{self.name}: SIGHUP reload")


def make_sides(log_dir: Path) -> list[Side]:
    sides: list[Side] = [DeployctlSide(name, command, server, log_dir)
                         for name, (command, server) in DEPLOYCTL_SIDES.items()]
    for name, (command, server) in PEER_SIDES.items():
        kind = GunicornSide if name.startswith("gunicorn") else Side
        sides.append(kind(name, command, server, log_dir))
    return sides


# --- measurements -------------------------------------------------------------------------

WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_command(port: int, seconds: float, close: bool) -> list[str]:
    return ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency",
            *(["-H", "Connection: close"] if close else []), f"http://127.0.0.1:{port}/"]


def parse_wrk_latency(text: str) -> dict:
    result = parse_wrk(text)
    for percentile, value, unit in WRK_PERCENTILE.findall(text):
        result[f"p{percentile}_ms"] = float(value) * UNIT_MS[unit]
    result["errors"] = result["non_2xx"] + sum(result["socket_errors"].values())
    return result


def run_wrk(port: int, seconds: float, close: bool) -> dict:
    run = subprocess.run(wrk_command(port, seconds, close), capture_output=True,
                         timeout=seconds + 30)
    if run.returncode:
        raise BenchError(f"wrk exited {run.returncode}: {run.stderr.decode(errors='replace')}")
    return parse_wrk_latency(run.stdout.decode(errors="replace"))


class Load:
    """wrk (up to 120 s) in the background until stop(), which interrupts it (wrk prints its
    totals on SIGINT); with probes, fresh connections every ~2 ms record the longest gap."""

    def __init__(self, port: int, close: bool, probes: bool = True):
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(wrk_command(port, 120, close), stdout=self.output,
                                        stderr=subprocess.STDOUT)
        self.stop_probes, self.gaps = threading.Event(), {}
        self.prober = threading.Thread(target=probe_gaps, args=(
            lambda: app_pids_answering(port, timeout=1.0) is not None, self.stop_probes,
            self.gaps))
        if probes:
            self.prober.start()

    def stop(self) -> dict:
        self.stop_probes.set()
        if self.prober.is_alive():
            self.prober.join(10)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.output.seek(0)
        result = parse_wrk_latency(self.output.read().decode(errors="replace"))
        self.output.close()
        if self.gaps:
            result.update(longest_no_answer_ms=self.gaps["gap_ms"],
                          failed_probes=self.gaps["failures"], probes=self.gaps["probes"])
        return result


def measure_rolling(side: Side, close: bool) -> dict:
    load = Load(side.port, close)
    try:
        time.sleep(1.5)
        started = time.monotonic()
        side.restart()
        restart_ms = (time.monotonic() - started) * 1000
        time.sleep(1.5)
    finally:
        result = load.stop()
    return {**result, "restart_ms": restart_ms}


def kill_counting(side: Side, victim: int) -> int:
    """kill -9 of victim; returns the client connections its process tree held at that moment
    (the requests in flight that die with it). The tree is frozen (SIGSTOP) first, so it can
    neither accept nor finish a connection between the count and the kill; the rest of the
    tree (gunicorn -w1's worker under a killed master) is let go on afterwards as before."""
    frozen = tree(victim)
    signal_all(frozen, signal.SIGSTOP)
    supervisor = [pid for pid in side.all_pids() if is_deployctl(pid)]
    held = sum(server_connections(side.port, frozen, supervisor).values())
    os.kill(victim, signal.SIGKILL)
    signal_all([pid for pid in frozen if pid != victim], signal.SIGCONT)
    return held


def measure_kill(side: Side) -> dict:
    """kill -9 of one app process under `Connection: close` load."""
    victim = (side.replica_pids() if isinstance(side, DeployctlSide) else side.app_pids())[-1]
    before = set(side.all_pids())
    load = Load(side.port, close=True, probes=False)
    try:
        time.sleep(1.0)
        held = kill_counting(side, victim)
        killed = time.monotonic()
        recovered_ms = None
        deadline = killed + 10.0
        while time.monotonic() < deadline:
            pid = app_pids_answering(side.port, timeout=1.0)
            if pid and pid not in before:
                recovered_ms = (time.monotonic() - killed) * 1000
                break
            time.sleep(0.002)
        time.sleep(1.0)
    finally:
        result = load.stop()
    return {**result, "recovered_ms": recovered_ms, "victim_connections": held}


def median_run(runs: list[dict]) -> dict:
    keys = ("requests_per_s", "p50_ms", "p99_ms")
    summary = {key: statistics.median(run[key] for run in runs if key in run) for key in keys}
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["runs"] = runs
    return summary


def measure_fastapi(bin_dir: Path, config: dict, log_dir: Path) -> dict:
    DeployctlSide.deployctl_bin = str(bin_dir / "deployctl")
    runs, seconds = config["fastapi_runs"], config["fastapi_seconds"]
    sides = make_sides(log_dir)
    results: dict[str, dict] = {side.name: {"server": side.server} for side in sides}
    cleanup: list[str] = []
    try:
        for side in sides:
            side.start()
        for side in sides:
            side.wait_ready(90)
        samples = {(side.name, close): [] for side in sides for close in (False, True)}
        for round_ in range(runs):
            shift = round_ % len(sides)
            for side in sides[shift:] + sides[:shift]:
                for close in (False, True):
                    samples[(side.name, close)].append(run_wrk(side.port, seconds, close))
        for side in sides:
            result = results[side.name]
            result["keepalive"] = median_run(samples[(side.name, False)])
            result["close"] = median_run(samples[(side.name, True)])
            result["memory"] = side.memory()
        for side in sides:
            result = results[side.name]
            if isinstance(side, (DeployctlSide, GunicornSide)):
                result["rolling_keepalive"] = measure_rolling(side, close=False)
                result["rolling_close"] = measure_rolling(side, close=True)
            result["kill"] = measure_kill(side)
    finally:
        for side in sides:
            cleanup += side.close()
    results["cleanup"] = cleanup
    return results
