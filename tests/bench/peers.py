"""deployctl side by side with runit, s6 and supervisord, all running the same tiny worker.

Run (stdlib only, from anywhere; --install needs root and network to Debian's mirror):

    /usr/bin/python3 tests/bench/peers.py [--install] [--quick] [--json OUT] [--bin DIR]

  --install   apt-get install the peers (runit s6 supervisor gunicorn nginx wrk) if any is missing
  --bin DIR   where `deployctl` is (default: build/bin under the repo root)
  --json OUT  also write every sample and summary as JSON to OUT
  --quick     fewer repetitions (well under 2 minutes)

The worker is tests/bench/tiny_worker.c, compiled here with `cc -O2`: an HTTP server that
answers every request with 200 "ok\\n" and an X-Pid header. Every replica listens on its own
127.0.0.1 port (base + index), so "replica i answers" means exactly that, under every
supervisor. Scenarios, each for every supervisor in the same run:

1. recovery: 4 replicas; `kill -9` one (in turn) and time until its port answers HTTP from a
   new pid. Each kill waits until the target has run > 1.1 s: runit and s6 hold back a restart
   of a service that ran under 1 s, deployctl's bench spec resets its backoff after 500 ms, so
   every supervisor is measured on its immediate-restart path.
2. startup: from launching the supervisor until all 8 replicas answer HTTP.
3. rolling: 4 replicas sharing one port (SO_REUSEPORT; deployctl: `listen`), wrk -t2 -c32
   for 6 s (quick) or 10 s, and mid-way each supervisor's own restart of every replica
   (runit: `sv -w 10 restart` each service in turn; s6: `s6-svc -wr -r` each in turn;
   supervisord: `supervisorctl restart all`; deployctl: `restart`; gunicorn, with 4 sync
   workers of an equivalent WSGI app instead of the tiny worker: SIGHUP). Reported: wrk's socket
   errors and non-2xx, and the longest window in which fresh connections (one every ~2 ms)
   got no 200. The worker does not speak deployctl's control protocol, so it ignores the
   DRAIN=1 of a rollout: the bench spec sets stop.timeout = 2s so the old replicas are
   killed while the load still runs (with the default 30s, `restart` outlasts the load).

Every supervisor runs in its own temp dir; every wait is bounded; every process started is
stopped by pid (the whole tree under the supervisor, frozen with SIGSTOP first so nothing is
respawned, then SIGKILL), plus any process still carrying this run's environment tag.
Exit status: 0 if every scenario ran for every supervisor, 1 otherwise (then the supervisors'
output stays in the temp dir named on stderr).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

TAG_VARIABLE = "DEPLOYCTL_BENCH_TAG"
HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
STABLE_AGE_S = 1.1  # a kill target must have run this long (see the module doc)
PACKAGES = {"runit": "runsvdir", "s6": "s6-svscan", "supervisor": "supervisord",
            "gunicorn": "gunicorn", "nginx": "nginx", "wrk": "wrk"}


class BenchError(Exception):
    """A scenario could not measure what it should; the message says what happened."""


def settings(quick: bool) -> dict:
    return {"kills": 6 if quick else 20, "startup_runs": 3 if quick else 10,
            "recovery_replicas": 4, "startup_replicas": 8, "wrk_seconds": 6 if quick else 10}


# --- processes ----------------------------------------------------------------------------

def proc_stat(pid: int) -> dict | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return {"state": fields[0], "ppid": int(fields[1]), "start_ticks": int(fields[19])}


def is_alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat["state"] not in ("Z", "X")


def age_s(pid: int) -> float:
    stat = proc_stat(pid)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - stat["start_ticks"] / CLK_TCK if stat else 0.0


def has_tag(pid: int, tag: str) -> bool:
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TAG_VARIABLE}={tag}".encode() in environment.split(b"\0")


def tagged_pids(tag: str) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and has_tag(int(e), tag)]


def tree(root: int) -> list[int]:
    """root and every descendant alive now, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        stat = proc_stat(int(entry)) if entry.isdigit() else None
        if stat:
            children.setdefault(stat["ppid"], []).append(int(entry))
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def signal_all(pids, number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def become_subreaper() -> None:
    """Orphans of the supervisors we kill become our children (not pid 1's), so we reap them
    and no zombie outlives the bench."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("peers: prctl(PR_SET_CHILD_SUBREAPER) failed; killed workers may stay zombies",
              file=sys.stderr)


def reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_tree_and_tag(root: int | None, tag: str) -> list[int]:
    """Freezes then kills root's tree and anything carrying `tag`; returns the tagged pids that
    were not in the tree (leaks worth reporting)."""
    in_tree = tree(root) if root and is_alive(root) else []
    leaked = [pid for pid in tagged_pids(tag) if pid not in in_tree]
    victims = in_tree + leaked
    signal_all(victims, signal.SIGSTOP)
    signal_all(victims, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(is_alive(pid) for pid in victims) and time.monotonic() < deadline:
        time.sleep(0.01)
    return leaked





# --- HTTP ---------------------------------------------------------------------------------

def answering_pid(port: int, timeout: float = 0.5) -> int | None:
    """The X-Pid of a 200 answer on 127.0.0.1:port, or None if nobody answers properly."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while b"\r\n\r\nok\n" not in data:
                chunk = connection.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200"):
        return None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "x-pid":
            return int(value)
    return None


def wait_all_answer(ports: list[int], timeout: float, what: str) -> dict[int, int]:
    """Polls until every port answers; returns port -> pid."""
    deadline, answers = time.monotonic() + timeout, {}
    while True:
        for port in ports:
            if port not in answers:
                pid = answering_pid(port, timeout=0.2)
                if pid:
                    answers[port] = pid
        if len(answers) == len(ports):
            return answers
        if time.monotonic() >= deadline:
            missing = sorted(set(ports) - set(answers))
            raise BenchError(f"{what}: ports {missing} did not answer within {timeout}s")
        time.sleep(0.001)


def free_base_port(count: int) -> int:
    """A base such that base .. base+count-1 on 127.0.0.1 are free now, below the ephemeral
    range: the bench's own client connections must not take a worker's port."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randint(10000, ephemeral_low - count - 1)
        try:
            probes = []
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise BenchError(f"found no {count} free consecutive ports on 127.0.0.1")


# --- supervisors --------------------------------------------------------------------------

class Supervisor:
    """One supervisor of `replicas` tiny workers on ports base .. base+replicas-1, in its own
    temp dir. start() launches it and returns at once; close() stops everything it started."""
    name = "?"

    def __init__(self, worker: Path, replicas: int, log_dir: Path, shared_port: bool = False):
        """shared_port: every replica on the one port `base` (SO_REUSEPORT, or deployctl's
        `listen`) instead of one port each."""
        self.worker, self.replicas, self.shared = worker, replicas, shared_port
        self.dir = Path(tempfile.mkdtemp(prefix=f"pb-{self.name}-"))
        self.base = free_base_port(1 if shared_port else replicas)
        self.ports = [self.base] if shared_port else [self.base + i for i in range(replicas)]
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, TAG_VARIABLE: self.tag}
        self.process: subprocess.Popen | None = None
        self.log_path = log_dir / f"{self.name}-{self.tag[:8]}.log"
        self.prepare()

    def prepare(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.dir)

    def worker_line(self, offset: str) -> str:
        return f"{self.worker} --port {self.base} --offset {'0' if self.shared else offset}"

    def restart_all(self) -> None:
        """The peer's own way to restart every replica (the rolling-restart scenario)."""
        raise NotImplementedError

    def workers(self) -> list[int]:
        """Pids of the tiny workers this supervisor runs now."""
        return [pid for pid in tagged_pids(self.tag) if is_alive(pid)
                and Path(f"/proc/{pid}/comm").read_text().strip() == "tiny_worker"]

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Waits until all replicas run, have run > STABLE_AGE_S and every port answers."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            if len(pids) == self.replicas and all(age_s(pid) > STABLE_AGE_S for pid in pids):
                wait_all_answer(self.ports, max(0.1, deadline - time.monotonic()), self.name)
                return
            if time.monotonic() >= deadline:
                raise BenchError(f"{self.name}: {len(pids)} of {self.replicas} workers settled "
                                 f"after {timeout}s")
            time.sleep(0.05)

    def close(self) -> list[str]:
        leaked = kill_tree_and_tag(self.process.pid if self.process else None, self.tag)
        if self.process:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                leaked.append(self.process.pid)
        reap_orphans()
        shutil.rmtree(self.dir, ignore_errors=True)
        return [f"{self.name}: pid {pid} outside the supervisor's tree, killed" for pid in leaked]


def checked_run(command: list[str], env: dict, timeout: float = 60.0) -> None:
    run = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=timeout)
    if run.returncode:
        raise BenchError(f"`{' '.join(command)}` exited {run.returncode}: "
                         f"{(run.stdout + run.stderr).decode(errors='replace').strip()}")


def write_run_script(service_dir: Path, line: str) -> None:
    service_dir.mkdir(parents=True)
    run = service_dir / "run"
    run.write_text(f"#!/bin/sh\nexec {line}\n")
    run.chmod(0o755)


class Runit(Supervisor):
    name = "runit"

    def prepare(self) -> None:
        for index in range(self.replicas):
            write_run_script(self.dir / "service" / f"web{index}", self.worker_line(str(index)))

    def command(self) -> list[str]:
        return ["runsvdir", str(self.dir / "service")]

    def restart_all(self) -> None:
        for index in range(self.replicas):  # sv -w: returns once that service is up again
            checked_run(["sv", "-w", "10", "restart", str(self.dir / "service" / f"web{index}")],
                        self.env)


class S6(Supervisor):
    name = "s6"

    def prepare(self) -> None:
        for index in range(self.replicas):
            write_run_script(self.dir / "scan" / f"web{index}", self.worker_line(str(index)))

    def command(self) -> list[str]:
        return ["s6-svscan", str(self.dir / "scan")]

    def restart_all(self) -> None:
        for index in range(self.replicas):  # -wr: returns once that service was restarted
            checked_run(["s6-svc", "-wr", "-T", "10000", "-r",
                         str(self.dir / "scan" / f"web{index}")], self.env)


SUPERVISORD_CONF = """\
[unix_http_server]
file = {dir}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {dir}/supervisord.log
pidfile = {dir}/supervisord.pid
childlogdir = {dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{dir}/supervisor.sock

[program:web]
command = {line}
process_name = %(program_name)s_%(process_num)d
numprocs = {replicas}
autorestart = true
startsecs = 0
stdout_logfile = NONE
stderr_logfile = NONE
"""


class Supervisord(Supervisor):
    name = "supervisord"

    def prepare(self) -> None:
        (self.dir / "supervisord.conf").write_text(SUPERVISORD_CONF.format(
            dir=self.dir, line=self.worker_line("%(process_num)d"), replicas=self.replicas))

    def command(self) -> list[str]:
        return ["supervisord", "-n", "-c", str(self.dir / "supervisord.conf")]

    def restart_all(self) -> None:
        checked_run(["supervisorctl", "-c", str(self.dir / "supervisord.conf"), "restart", "all"],
                    self.env)


DEPLOY_SPEC = """\
name = "bench"

[services.web]
{where}
replicas = {replicas}

[services.web.health]
kind = "http"
interval = "1s"

[services.web.restart]
backoff = {{ initial = "100ms", max = "30s", reset_after = "500ms" }}
crash_loop = {{ restarts = 1000, within = "60s" }}

[services.web.stop]
timeout = "2s"
"""


class Deployctl(Supervisor):
    """`deployctl up -d` in the foreground of start(): it forks the supervisor daemon, so the
    tree to stop is found by the environment tag; close() runs `down` first."""
    name = "deployctl"
    deployctl_bin = "deployctl"

    def prepare(self) -> None:
        self.env["DEPLOYCTL_RUNTIME_DIR"] = str(self.dir / "run")
        worker = json.dumps(str(self.worker))
        where = (f'command = [{worker}]\nlisten = ["127.0.0.1:{self.base}"]' if self.shared
                 else f'command = [{worker}, "--port", "{{port}}"]\nport = {self.base}')
        (self.dir / "deploy.toml").write_text(DEPLOY_SPEC.format(where=where,
                                                                 replicas=self.replicas))

    def restart_all(self) -> None:
        checked_run([self.deployctl_bin, "restart", "--name", "bench"], self.env)

    def command(self) -> list[str]:
        return [self.deployctl_bin, "up", "-d", str(self.dir / "deploy.toml")]

    def close(self) -> list[str]:
        problems = []
        if tagged_pids(self.tag):
            down = subprocess.run([self.deployctl_bin, "down", "--name", "bench"], env=self.env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if down.returncode not in (0, 3):
                problems.append(f"deployctl down exited {down.returncode}: "
                                f"{down.stderr.decode(errors='replace').strip()}")
        if self.process:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                problems.append("`deployctl up -d` still running 30s after down")
        still = [pid for pid in tagged_pids(self.tag) if is_alive(pid)]
        problems += [f"deployctl: pid {pid} alive after down, killed" for pid in still]
        return problems + super().close()


WSGI_APP = """\
import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3"), ("X-Pid", str(os.getpid()))])
    return [b"ok\\n"]
"""


class Gunicorn(Supervisor):
    """gunicorn's master with `replicas` sync workers running a WSGI app that answers like the
    tiny worker: gunicorn cannot run a foreign binary, so only the rolling scenario uses it."""
    name = "gunicorn"

    def prepare(self) -> None:
        (self.dir / "app.py").write_text(WSGI_APP)

    def command(self) -> list[str]:
        return ["gunicorn", "--workers", str(self.replicas), "--bind",
                f"127.0.0.1:{self.base}", "--chdir", str(self.dir), "app:app"]

    def workers(self) -> list[int]:
        return [pid for pid in tree(self.process.pid)[1:] if is_alive(pid)]

    def restart_all(self) -> None:
        """SIGHUP: gunicorn starts new workers and stops the old ones; returns once every
        worker is new (bounded)."""
        old = set(self.workers())
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30.0
        while True:
            now = set(self.workers())
            if len(now) == self.replicas and not now & old:
                return
            if time.monotonic() >= deadline:
                raise BenchError(f"gunicorn: workers {sorted(now)} 30s after SIGHUP "
                                 f"(old: {sorted(old)})")
            time.sleep(0.01)


SUPERVISORS = [Deployctl, Runit, S6, Supervisord]
ROLLING_PEERS = SUPERVISORS + [Gunicorn]


# --- scenarios ----------------------------------------------------------------------------

def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values)}


def kill_and_time(supervisor: Supervisor, port: int) -> dict:
    """Kills the worker on `port` once it has run > STABLE_AGE_S; ms until a new pid answers."""
    deadline = time.monotonic() + 10.0
    while True:
        pids = wait_all_answer(supervisor.ports, 10.0, f"{supervisor.name} before a kill")
        old = pids[port]
        if age_s(old) > STABLE_AGE_S:
            break
        if time.monotonic() >= deadline:
            raise BenchError(f"{supervisor.name}: pid {old} on port {port} never ran "
                             f"{STABLE_AGE_S}s")
        time.sleep(0.05)
    if not has_tag(old, supervisor.tag):
        raise BenchError(f"pid {old} answering on {port} is not a process of this bench")
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        pid = answering_pid(port, timeout=0.2)
        now = time.monotonic()
        if pid and pid != old:
            return {"port": port, "old_pid": old, "new_pid": pid, "ms": (now - killed) * 1000}
        if now - killed > 10.0:
            raise BenchError(f"{supervisor.name}: no new pid answered on {port} within 10s of "
                             f"kill -9 {old}")
        time.sleep(0.0005)


def measure_recovery(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    supervisor = kind(worker, config["recovery_replicas"], log_dir)
    try:
        supervisor.start()
        wait_all_answer(supervisor.ports, 30.0, f"{supervisor.name} start")
        kills = [kill_and_time(supervisor, supervisor.ports[n % supervisor.replicas])
                 for n in range(config["kills"])]
    finally:
        cleanup = supervisor.close()
    return {"ms": summary([k["ms"] for k in kills]), "kills": kills, "cleanup": cleanup}


def measure_startup(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    samples, cleanup = [], []
    for _ in range(config["startup_runs"]):
        supervisor = kind(worker, config["startup_replicas"], log_dir)
        try:
            started = time.monotonic()
            supervisor.start()
            wait_all_answer(supervisor.ports, 30.0, f"{supervisor.name} startup")
            samples.append((time.monotonic() - started) * 1000)
        finally:
            cleanup += supervisor.close()
    return {"ms": summary(samples), "samples_ms": samples, "cleanup": cleanup}


def probe_gaps(port: int, stop: threading.Event, out: dict) -> None:
    """New connections every ~2 ms until `stop`; out["gap_ms"]: the longest time from a first
    failed answer to the next good one, out["failures"]: failed probes."""
    failed_since, out["gap_ms"], out["failures"], out["probes"] = None, 0.0, 0, 0
    while not stop.is_set():
        answered = answering_pid(port, timeout=1.0) is not None
        now = time.monotonic()
        out["probes"] += 1
        if not answered:
            out["failures"] += 1
            failed_since = failed_since or now
        elif failed_since is not None:
            out["gap_ms"] = max(out["gap_ms"], (now - failed_since) * 1000)
            failed_since = None
        time.sleep(0.002)
    if failed_since is not None:
        out["gap_ms"] = max(out["gap_ms"], (time.monotonic() - failed_since) * 1000)
        out["unanswered_at_end"] = True


WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                               r"timeout (\d+)")


def parse_wrk(text: str) -> dict:
    errors = WRK_SOCKET_ERRORS.search(text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not total or not rate:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    return {"requests": int(total[1]), "requests_per_s": float(rate[1]),
            "non_2xx": int(non_2xx[1]) if non_2xx else 0,
            "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                      map(int, errors.groups()))) if errors else {}}


def measure_rolling(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    supervisor = kind(worker, 4, log_dir, shared_port=True)
    seconds = config["wrk_seconds"]
    stop, gaps = threading.Event(), {}
    prober = threading.Thread(target=probe_gaps, args=(supervisor.base, stop, gaps))
    try:
        supervisor.start()
        supervisor.wait_settled()
        with tempfile.TemporaryFile() as output:
            load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds}s",
                                     f"http://127.0.0.1:{supervisor.base}/"],
                                    stdout=output, stderr=subprocess.STDOUT)
            prober.start()
            try:
                time.sleep(seconds / 2)  # the scenario: restart mid-way through the load
                before = set(supervisor.workers())
                started = time.monotonic()
                supervisor.restart_all()
                restart_ms = (time.monotonic() - started) * 1000
                load.wait(seconds + 30)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait(5)
                stop.set()
                prober.join(10)
            output.seek(0)
            result = parse_wrk(output.read().decode(errors="replace"))
        replaced = len(before - set(supervisor.workers()))
    finally:
        stop.set()
        cleanup = supervisor.close()
    if replaced != 4:
        raise BenchError(f"{supervisor.name}: the restart replaced {replaced} of 4 workers")
    return {**result, "restart_command_ms": restart_ms, "longest_no_answer_ms": gaps["gap_ms"],
            "failed_probes": gaps["failures"], "probes": gaps["probes"], "cleanup": cleanup}


SCENARIOS = {
    "recovery": ("kill -9 of one of 4 replicas until a new pid answers HTTP on its port, ms",
                 measure_recovery),
    "startup": ("launch of the supervisor until all 8 replicas answer HTTP, ms",
                measure_startup),
    "rolling": ("4 replicas on one port, wrk -t2 -c32, every replica restarted mid-way",
                measure_rolling),
}


# --- report -------------------------------------------------------------------------------

def print_rolling(title: str, results: dict) -> None:
    print(f"\nrolling: {title}")
    print(f"  {'supervisor':<13}{'req/s':>9}{'non-2xx':>9}{'sock err':>10}"
          f"{'no-answer ms':>14}{'failed probes':>15}{'restart ms':>12}")
    for name, result in results.items():
        if "error" in result:
            print(f"  {name:<13} FAILED: {result['error']}")
            continue
        errors = sum(result["socket_errors"].values())
        probes = f"{result['failed_probes']}/{result['probes']}"
        print(f"  {name:<13}{result['requests_per_s']:>9.0f}{result['non_2xx']:>9}{errors:>10}"
              f"{result['longest_no_answer_ms']:>14.1f}{probes:>15}"
              f"{result['restart_command_ms']:>12.0f}")
        for problem in result.get("cleanup", []):
            print(f"    cleanup: {problem}")
    print("  (no-answer: longest window in which new connections, tried every ~2 ms, got no "
          "200;\n   sock err: wrk's connect+read+write+timeout errors; restart ms: the restart "
          "command's run time)")


def print_report(report: dict) -> None:
    meta = report["meta"]
    print(f"peer benchmark ({meta['cpus']} CPUs, load {meta['load_before']}, "
          f"{'quick' if meta['quick'] else 'full'} run); worker: tiny_worker.c")
    for scenario, (title, _) in SCENARIOS.items():
        if scenario == "rolling":
            print_rolling(title, report[scenario])
            continue
        results = report[scenario]
        print(f"\n{scenario}: {title}")
        print(f"  {'supervisor':<13}{'n':>4}{'median':>10}{'max':>10}{'median vs deployctl':>22}")
        base = results.get("deployctl", {}).get("ms", {}).get("median")
        for name, result in results.items():
            if "error" in result:
                print(f"  {name:<13} FAILED: {result['error']}")
                continue
            stats = result["ms"]
            ratio = f"{stats['median'] / base:>21.2f}x" if base else f"{'-':>22}"
            print(f"  {name:<13}{stats['n']:>4}{stats['median']:>10.1f}{stats['max']:>10.1f}"
                  f"{ratio}")
            for problem in result.get("cleanup", []):
                print(f"    cleanup: {problem}")
    print(f"\n(ratio > 1: the peer is slower than deployctl)\ntotal {meta['seconds']:.1f} s")


# --- setup --------------------------------------------------------------------------------

def install() -> None:
    """apt-get install the peers that are missing; nothing when all are there."""
    missing = [package for package, binary in PACKAGES.items() if not shutil.which(binary)]
    if not missing:
        print("peers: runit, s6, supervisor, gunicorn, nginx, wrk are installed")
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    print("peers: " + " ".join(command), flush=True)
    if subprocess.run(command, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}).returncode:
        sys.exit("peers: apt-get install failed: run `apt-get update` as root and retry")


def build_worker(out_dir: Path) -> Path:
    """Compiles tiny_worker.c into out_dir; exits with the compiler's message if it fails."""
    binary = out_dir / "tiny_worker"
    build = subprocess.run(["cc", "-O2", "-o", str(binary), str(HERE / "tiny_worker.c")],
                           capture_output=True, text=True)
    if build.returncode:
        sys.exit(f"peers: cc -O2 tiny_worker.c failed:\n{build.stderr}")
    return binary


def check_tools(bin_dir: Path) -> None:
    if not os.access(bin_dir / "deployctl", os.X_OK):
        sys.exit(f"peers: {bin_dir / 'deployctl'} is not executable: build it or pass --bin DIR")
    missing = [b for b in ("runsvdir", "s6-svscan", "supervisord") if not shutil.which(b)]
    if missing:
        sys.exit(f"peers: {', '.join(missing)} not found: run with --install (as root)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="apt-get install the peers")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--bin", type=Path, metavar="DIR",
                        default=HERE.parents[1] / "build" / "bin",
                        help="directory of deployctl (default build/bin)")
    return parser.parse_args()


def run_all(worker: Path, config: dict, log_dir: Path) -> dict:
    report = {}
    for scenario, (_, measure) in SCENARIOS.items():
        report[scenario] = {}
        for kind in ROLLING_PEERS if scenario == "rolling" else SUPERVISORS:
            try:
                report[scenario][kind.name] = measure(kind, worker, config, log_dir)
            except (BenchError, OSError, subprocess.SubprocessError, ValueError) as error:
                report[scenario][kind.name] = {"error": str(error)}
    return report


def main() -> int:
    args = parse_args()
    if args.install:
        install()
    bin_dir = args.bin.resolve()
    check_tools(bin_dir)
    Deployctl.deployctl_bin = str(bin_dir / "deployctl")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind: cleanups run
    become_subreaper()
    config = settings(args.quick)
    work = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    started = time.monotonic()
    meta = {"bin": str(bin_dir), "quick": args.quick, "cpus": os.cpu_count(),
            "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "settings": config, "logs": str(work)}
    try:
        report = run_all(build_worker(work), config, work)
    except KeyboardInterrupt:
        print("peers: interrupted; every supervisor started so far was stopped", file=sys.stderr)
        return 130
    meta["seconds"] = time.monotonic() - started
    report = {"meta": meta, **report}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    failed = any("error" in r for s in SCENARIOS for r in report[s].values())
    if failed:
        print(f"peers: supervisor logs kept in {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
