"""Shared helpers for the deployctl end-to-end tests: private deployments, processes, HTTP.

Every deployctl call of a Deployment gets a private DEPLOYCTL_RUNTIME_DIR, so tests never see
each other's supervisors. Every wait polls against a deadline. A Deployment remembers every
process it saw (supervisor, replicas, their descendants, pids the test hands it) and, when
closed, reports as leaks those still alive after `down`.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3"
POLL_INTERVAL = 0.03  # seconds between two looks at something we wait for
LEAK_GRACE = 1.0  # seconds a process may take to vanish after `down` returned
TAG_VARIABLE = "DEPLOYCTL_ITEST_TAG"  # marks every process a Deployment's deployctl starts
STATE_SOCKET = "control.sock"


# --- binaries and paths -------------------------------------------------------------------

def source_dir() -> Path:
    configured = os.environ.get("DEPLOYCTL_SOURCE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2]


def worker_path() -> Path:
    return source_dir() / "tests" / "workers" / "worker.py"


def required_binary(variable: str) -> str:
    """The absolute path in env `variable`; fails the test with how to fix it otherwise."""
    path = os.environ.get(variable)
    if not path:
        pytest.fail(f"{variable} is not set: run the integration tests through ctest, or export "
                    f"{variable}=/absolute/path/of/the/built/binary", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{variable}={path} is not an executable file: build it first", pytrace=False)
    return path


def deployctl_bin() -> str:
    return required_binary("DEPLOYCTL_BIN")


def server_bin() -> str:
    return required_binary("DEPLOY_SERVER_BIN")


def server_command(*extra: str) -> list[str]:
    """argv of deploy-server serving the inherited socket, with GET /sleep/<ms> enabled."""
    return [server_bin(), "--debug-endpoints", *extra]


def toml_array(items) -> str:
    return "[" + ", ".join(json.dumps(str(item)) for item in items) + "]"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- waiting ------------------------------------------------------------------------------

def wait_until(condition, timeout: float, what: str, interval: float = POLL_INTERVAL):
    """Polls `condition()` until it returns something truthy, which is returned; raises
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# --- processes (from /proc) ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ProcInfo:
    pid: int
    comm: str
    state: str  # R, S, D, T (stopped), t, Z (zombie), X, ...
    ppid: int
    pgid: int
    sid: int
    start_ticks: int  # start time since boot in clock ticks: tells a reused pid apart


def proc_info(pid: int) -> ProcInfo | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm_end = text.rindex(")")
    fields = text[comm_end + 2:].split()
    return ProcInfo(pid=pid, comm=text[text.index("(") + 1:comm_end], state=fields[0],
                    ppid=int(fields[1]), pgid=int(fields[2]), sid=int(fields[3]),
                    start_ticks=int(fields[19]))


def is_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    info = proc_info(pid)
    return info is not None and info.state not in ("Z", "X")


def process_state(pid: int) -> str | None:
    info = proc_info(pid)
    return info.state if info else None


def parent_pid(pid: int) -> int | None:
    info = proc_info(pid)
    return info.ppid if info else None


def process_group(pid: int) -> int | None:
    info = proc_info(pid)
    return info.pgid if info else None


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def descendants(root: int) -> list[int]:
    children = collections.defaultdict(list)
    for pid in all_pids():
        info = proc_info(pid)
        if info:
            children[info.ppid].append(pid)
    found, todo = [], [root]
    while todo:
        for child in children[todo.pop()]:
            found.append(child)
            todo.append(child)
    return found


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connections_to(pid: int, ports: set[int]) -> int:
    """Established IPv4 TCP connections of process `pid` to a port in `ports` (as `ss -tnp`)."""
    inodes = socket_inodes(pid)
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[9] in inodes and remote_port in ports and fields[3] == "01":  # ESTABLISHED
            count += 1
    return count


def pids_with_environment(variable: str, value: str) -> list[int]:
    needle = f"{variable}={value}".encode()
    found = []
    for pid in all_pids():
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environment.split(b"\0"):
            found.append(pid)
    return found


def wait_gone(pids, timeout: float) -> list[int]:
    """Waits until none of `pids` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if is_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(POLL_INTERVAL)


def assert_gone(pids, timeout: float = LEAK_GRACE) -> None:
    """Fails naming every process of `pids` still alive after `timeout` seconds."""
    alive = wait_gone(pids, timeout)
    assert not alive, f"still running {timeout}s later: " + \
        ", ".join(f"pid {pid} ({command_line(pid)})" for pid in alive)


class ProcessTracker:
    """Pids seen during a test, each with its start time so a reused pid is never mistaken."""

    def __init__(self):
        self._seen: dict[int, tuple[int, str]] = {}

    def track(self, pid: int | None, label: str) -> None:
        if not pid or pid in self._seen:
            return
        info = proc_info(pid)
        if info is not None:
            self._seen[pid] = (info.start_ticks, label)

    def alive(self) -> dict[int, str]:
        """The tracked processes still running (pid -> label)."""
        result = {}
        for pid, (start_ticks, label) in self._seen.items():
            info = proc_info(pid)
            if info and info.start_ticks == start_ticks and info.state not in ("Z", "X"):
                result[pid] = label
        return result


# --- HTTP ---------------------------------------------------------------------------------

@dataclasses.dataclass
class HttpResult:
    status: int | None
    body: str
    failure: str | None  # refused, reset (or EOF), timeout, status (not 2xx), other; None: 2xx
    detail: str = ""


def http_get(port: int, path: str = "/whoami", timeout: float = 5.0) -> HttpResult:
    """One GET on a NEW TCP connection to 127.0.0.1:port; never raises for network errors."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    except ConnectionRefusedError as error:
        return HttpResult(None, "", "refused", repr(error))
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
            http.client.RemoteDisconnected, http.client.IncompleteRead) as error:
        return HttpResult(None, "", "reset", repr(error))
    except TimeoutError as error:
        return HttpResult(None, "", "timeout", repr(error))
    except (OSError, http.client.HTTPException) as error:
        return HttpResult(None, "", "other", repr(error))
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        return HttpResult(response.status, body, "status", f"HTTP {response.status}: {body[:200]}")
    return HttpResult(response.status, body, None)


class RequestLoop(threading.Thread):
    """Calls `attempt()` in a background thread, one call after the other, until stopped, `limit`
    calls or `seconds`, pausing `pause` seconds between calls. A context manager; subclasses
    record what each attempt saw."""

    def __init__(self, limit: int, seconds: float, pause: float = 0.0):
        super().__init__(daemon=True)
        self.limit, self.seconds, self.pause = limit, seconds, pause
        self.stopping = threading.Event()

    def attempt(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            self.attempt()
            if self.pause:
                self.stopping.wait(self.pause)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(30)


class ClientLoop:
    """GETs in a background thread, each on a new connection, until stopped, `max_requests`
    or `duration` seconds; records every failure by kind. Use as a context manager."""

    def __init__(self, port: int, paths=("/whoami",), timeout: float = 5.0,
                 max_requests: int = 100_000, duration: float = 60.0, pause: float = 0.005):
        self.port, self.paths, self.timeout = port, tuple(paths), timeout
        self.max_requests, self.duration, self.pause = max_requests, duration, pause
        self.successes = 0
        # (monotonic time, kind, path, detail) of each failed request
        self.failures: list[tuple[float, str, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), "client loop thread did not stop"

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        for count in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            path = self.paths[count % len(self.paths)]
            result = http_get(self.port, path, self.timeout)
            if result.failure is None:
                self.successes += 1
            else:
                self.failures.append((time.monotonic(), result.failure, path, result.detail))
            self._stop.wait(self.pause)

    def failure_counts(self) -> collections.Counter:
        return collections.Counter(kind for _, kind, _, _ in self.failures)

    def wait_for_successes(self, count: int, timeout: float) -> None:
        wait_until(lambda: self.successes >= count, timeout,
                   f"{count} successful requests on port {self.port} ({self.summary()})")

    def summary(self) -> str:
        return f"{self.successes} ok, failures {dict(self.failure_counts())}, first: " \
               f"{self.failures[:3]}"


# --- deployctl runs -----------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """A finished deployctl command."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"`deployctl {' '.join(self.args)}` exited {self.returncode} after "
                f"{self.seconds:.2f}s\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


_run_serial = itertools.count()


def run_command(argv: list[str], env: dict, cwd: Path, timeout: float, scratch: Path) -> Run:
    """Runs argv with its output in files (a daemon that keeps our fds cannot hang us) and
    waits at most `timeout` seconds for it to exit; kills it and fails otherwise."""
    serial = next(_run_serial)
    out_path, err_path = scratch / f"run{serial}.stdout", scratch / f"run{serial}.stderr"
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   env=env, cwd=cwd)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise AssertionError(f"`{' '.join(argv)}` did not exit within {timeout}s; stderr:\n"
                             f"{err_path.read_text(errors='replace')}") from None
    run = Run(argv[1:], process.returncode, out_path.read_text(errors="replace"),
              err_path.read_text(errors="replace"), time.monotonic() - started)
    out_path.unlink()
    err_path.unlink()
    return run


# --- status JSON --------------------------------------------------------------------------

def all_replicas(status: dict) -> list[dict]:
    return [replica for service in status["services"] for replica in service["replicas"]]


def replica_by_id(status: dict, replica_id: str) -> dict | None:
    return next((r for r in all_replicas(status) if r["id"] == replica_id), None)


def service_by_name(status: dict, name: str) -> dict:
    return next(s for s in status["services"] if s["name"] == name)


def running_replicas(status: dict, service: str | None = None) -> list[dict]:
    """Replicas with a process, of `service` or of all services."""
    services = [service_by_name(status, service)] if service else status["services"]
    return [r for s in services for r in s["replicas"] if r["pid"] is not None]


def all_ready(status: dict | None, count: int | None = None) -> bool:
    """Every replica with a process is ready (and, if given, there are `count` of them)."""
    if status is None:
        return False
    replicas = running_replicas(status)
    if count is not None and len(replicas) != count:
        return False
    return bool(replicas) and all(r["state"] == "ready" for r in replicas)


def replaced(status: dict, replica_id: str, old_pid: int) -> bool:
    """`replica_id` runs a new process (not `old_pid`) and it is ready."""
    replica = replica_by_id(status, replica_id)
    return (replica is not None and replica["pid"] not in (None, old_pid)
            and replica["state"] == "ready")


EXIT_LINE = re.compile(r"(?P<id>[\w.-]+) \(pid (?P<pid>\d+)\) exited: "
                       r"(?P<how>code -?\d+|signal \d+ \(\w+\))")


def exit_lines(log: str) -> list[tuple[str, int, str]]:
    """(replica id, pid, how) for each `web.1 (pid 4250) exited: signal 9 (SIGKILL)` line;
    `how` is `code N` or `signal N (NAME)`, whatever follows it on the line is ignored."""
    return [(m["id"], int(m["pid"]), m["how"]) for m in EXIT_LINE.finditer(log)]


def worker_runs(events_path: Path) -> list[dict]:
    """The runs a worker recorded with --events, in start order: {"pid", "start", "ready",
    "exit"} in CLOCK_BOOTTIME seconds; "ready" and "exit" are None until they happen."""
    runs: dict[int, dict] = {}
    for line in events_path.read_text().splitlines():
        what, pid, seconds = line.split()
        run = runs.setdefault(int(pid), {"pid": int(pid), "start": None, "ready": None,
                                         "exit": None})
        run[what] = float(seconds)
    return sorted(runs.values(), key=lambda run: run["start"])


SLEEPERS = """
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]
replicas = REPLICAS

[services.web.health]
kind = "none"

[services.web.stop]
timeout = "1s"
"""


def sleepers(replicas: int) -> str:
    """A spec of `replicas` `sleep 600` processes, ready as soon as they run."""
    return SLEEPERS.replace("REPLICAS", str(replicas))


# --- a private deployment -----------------------------------------------------------------

class Deployment:
    """One deployment in its own temp dir and runtime dir. The spec text may use these
    placeholders: @NAME@, @PORT@ (a free port), @DIR@ (the temp dir), @PYTHON@, @WORKER@
    (tests/workers/worker.py) and @SERVER_COMMAND@ (a TOML array: deploy-server with its debug
    endpoints)."""

    def __init__(self, spec: str, name: str = "itest"):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="dctl-"))  # short: unix socket paths are limited
        self.runtime_dir = self.dir / "run"
        self.runtime_dir.mkdir()
        self.state_dir = self.runtime_dir / name
        self.socket_path = self.state_dir / STATE_SOCKET
        self.spec_path = self.dir / "deploy.toml"
        self.port = free_port()
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, "DEPLOYCTL_RUNTIME_DIR": str(self.runtime_dir),
                    TAG_VARIABLE: self.tag}
        self.tracker = ProcessTracker()
        self.supervisor_pid: int | None = None
        self.foreground: subprocess.Popen | None = None
        self.last_status: dict | None = None
        self.ran_deployctl = False
        try:
            self.write_spec(spec)
        except BaseException:  # e.g. pytest.fail for a missing binary: nothing else to close
            shutil.rmtree(self.dir)
            raise

    # spec
    def expand(self, text: str) -> str:
        values = {"@NAME@": self.name, "@PORT@": str(self.port), "@DIR@": str(self.dir),
                  "@PYTHON@": PYTHON, "@WORKER@": str(worker_path())}
        if "@SERVER_COMMAND@" in text:
            values["@SERVER_COMMAND@"] = toml_array(server_command())
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        leftover = re.search(r"@[A-Z0-9_]+@", text)
        assert leftover is None, f"unknown placeholder {leftover[0]} in the test's spec"
        return text

    def write_spec(self, text: str) -> None:
        self.spec_path.write_text(self.expand(text))

    # commands
    def deployctl(self, *args: str, timeout: float = 15.0, prefix: tuple = (),
                  binary: str | None = None) -> Run:
        """Runs `deployctl ARGS` in the temp dir with this deployment's environment; `prefix`
        goes before the binary (e.g. setpriv ...); `binary` replaces DEPLOYCTL_BIN."""
        argv = [*prefix, binary or deployctl_bin(), *args]
        self.ran_deployctl = True
        run = run_command(argv, self.env, self.dir, timeout, self.dir)
        run.args = list(args)
        return run

    def up(self, *extra: str, timeout: float = 30.0) -> Run:
        """`deployctl up -d SPEC`; on success, records the supervisor and replicas."""
        run = self.deployctl("up", "-d", *extra, str(self.spec_path), timeout=timeout)
        if run.returncode == 0:
            self.status()
        return run

    def up_foreground(self) -> subprocess.Popen:
        """`deployctl up SPEC` in its own session (so Ctrl+C can be sent to its group), output
        in foreground.stdout / foreground.stderr."""
        assert self.foreground is None
        binary = deployctl_bin()
        self.ran_deployctl = True
        with open(self.dir / "foreground.stdout", "wb") as out, \
                open(self.dir / "foreground.stderr", "wb") as err:
            self.foreground = subprocess.Popen(
                [binary, "up", str(self.spec_path)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, env=self.env, cwd=self.dir, start_new_session=True)
        self.supervisor_pid = self.foreground.pid
        self.tracker.track(self.foreground.pid, "foreground supervisor")
        # Reap it the moment it exits, as a shell would: `down` must not see a zombie.
        threading.Thread(target=self.foreground.wait, daemon=True).start()
        return self.foreground

    def foreground_output(self) -> tuple[str, str]:
        return ((self.dir / "foreground.stdout").read_text(errors="replace"),
                (self.dir / "foreground.stderr").read_text(errors="replace"))

    def scale(self, timeout: float = 30.0, **counts: int) -> Run:
        run = self.deployctl("scale", *(f"{name}={count}" for name, count in counts.items()),
                             "-f", str(self.spec_path), timeout=timeout)
        if run.returncode == 0:
            self.status()
        return run

    def down(self, timeout: float = 30.0) -> Run:
        self.track_descendants()
        return self.deployctl("down", str(self.spec_path), timeout=timeout)

    # status
    def try_status(self) -> tuple[Run, dict | None]:
        run = self.deployctl("status", "--json", str(self.spec_path))
        if run.returncode != 0:
            return run, None
        try:
            status = json.loads(run.stdout)
        except json.JSONDecodeError as error:
            raise AssertionError(f"status --json printed invalid JSON ({error}):\n{run.stdout}")
        self._record(status)
        return run, status

    def status(self) -> dict:
        run, status = self.try_status()
        assert status is not None, run.describe()
        return status

    def _record(self, status: dict) -> None:
        self.last_status = status
        if status.get("pid"):
            self.supervisor_pid = status["pid"]
            self.tracker.track(status["pid"], "supervisor")
        for replica in all_replicas(status):
            self.tracker.track(replica.get("pid"), f"replica {replica.get('id')}")

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "a status") -> dict:
        """Polls `status --json` until `predicate(status)` holds; returns that status. A
        deployment that is not (yet) running counts as "not yet"; a foreground supervisor
        that exits meanwhile fails at once."""
        def check():
            if self.foreground is not None and self.foreground.poll() is not None:
                raise AssertionError(f"the foreground supervisor exited with "
                                     f"{self.foreground.returncode} while waiting for {what}")
            _, status = self.try_status()
            return status if status is not None and predicate(status) else None
        try:
            return wait_until(check, timeout, what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnostics()}") from None

    def replica_pids(self, status: dict | None = None) -> dict[str, int]:
        status = status if status is not None else self.status()
        return {r["id"]: r["pid"] for r in all_replicas(status) if r["pid"] is not None}

    # logs and processes
    def log_text(self) -> str:
        """The supervisor's log: its stderr in the foreground, STATE/supervisor.log detached."""
        if self.foreground is not None:
            return self.foreground_output()[1]
        path = self.state_dir / "supervisor.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def service_log(self, selector: str = "") -> str:
        """The replica output of `deployctl logs [SELECTOR]` (last 10,000 lines): where replica
        lines go under `up -d` (never into supervisor.log)."""
        run = self.deployctl("logs", *([selector] if selector else []), "-n", "10000",
                             str(self.spec_path))
        return run.stdout

    def diagnostics(self) -> str:
        tail = "\n".join(self.log_text().splitlines()[-40:])
        return (f"last status: {json.dumps(self.last_status, indent=1)}\n"
                f"--- supervisor log (tail)\n{tail}")

    def track_pid(self, pid: int, label: str) -> None:
        self.tracker.track(pid, label)

    def track_descendants(self) -> None:
        if self.supervisor_pid and is_alive(self.supervisor_pid):
            for pid in descendants(self.supervisor_pid):
                self.tracker.track(pid, f"descendant of the supervisor: {command_line(pid)}")

    def _track_tagged(self) -> None:
        for pid in pids_with_environment(TAG_VARIABLE, self.tag):
            self.tracker.track(pid, f"started by this test's deployctl: {command_line(pid)}")

    def leftovers(self, grace: float = LEAK_GRACE) -> dict[int, str]:
        """Processes of this deployment still alive `grace` seconds from now (or sooner)."""
        self._track_tagged()
        wait_gone(list(self.tracker.alive()), grace)
        return self.tracker.alive()

    def close(self) -> list[str]:
        """Teardown: `down` if anything runs, then kill (and report) whatever survived it."""
        problems = []
        self.track_descendants()
        self._track_tagged()
        if self.ran_deployctl:
            problems += self._down_for_teardown()
        problems += self._reap_foreground()
        for pid, label in self.leftovers().items():
            problems.append(f"leaked after down: pid {pid} ({label}): {command_line(pid)}")
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if not os.environ.get("DEPLOYCTL_ITEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def _down_for_teardown(self) -> list[str]:
        self.track_descendants()
        try:  # by name: the test may have left an invalid spec file
            run = self.deployctl("down", "--name", self.name, timeout=40)
        except AssertionError as error:
            return [f"teardown: {error}"]
        return [] if run.returncode in (0, 3) else [f"teardown: {run.describe()}"]

    def _reap_foreground(self) -> list[str]:
        if self.foreground is None:
            return []
        try:
            self.foreground.wait(10)
            return []
        except subprocess.TimeoutExpired:
            self.foreground.kill()
            self.foreground.wait(5)
            return ["teardown: the foreground supervisor did not exit after down; killed"]


# --- ports and process start times (appended for test_apps.py) ----------------------------

def free_port_range(count: int, attempts: int = 50) -> int:
    """A port P such that P .. P+count-1 are all free on 127.0.0.1 right now (for specs with
    per-replica ports); fails the test if none is found in `attempts` tries."""
    for _ in range(attempts):
        base = free_port()
        if base + count - 1 > 65535:
            continue
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    pytest.fail(f"found no {count} consecutive free ports in {attempts} tries", pytrace=False)


def process_started_at(pid: int) -> float | None:
    """When `pid` was created, as a time.time() value (to the clock tick, 10 ms here)."""
    info = proc_info(pid)
    if info is None:
        return None
    boot_offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return info.start_ticks / os.sysconf("SC_CLK_TCK") + boot_offset


# --- the FastAPI examples of config/examples/fastapi/ ---------------------------------------

EXAMPLES = source_dir() / "config" / "examples" / "fastapi"
APP_FILES = ("main.py", "migrate.py", "notify_app.py")


def example_text(spec: str, replacements: dict[str, str]) -> str:
    """The example spec `spec` named @NAME@, each `old` of `replacements` replaced by `new`;
    fails if the example no longer contains `old` (the test would silently test less)."""
    text = (EXAMPLES / spec).read_text()
    first_table = re.search(r"^\[", text, flags=re.M).start()  # top-level keys come before
    head, count = re.subn(r'^name = "[^"]*"$', 'name = "@NAME@"', text[:first_table], flags=re.M)
    assert count == 1, f"{spec}: expected one top-level name line"
    text = head + text[first_table:]
    for old, new in replacements.items():
        assert old in text, f"{spec} no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    return text


def deploy_example(deployment, spec: str, replacements: dict[str, str]):
    """A Deployment of the example `spec` in its temp dir, with the example's app files."""
    dep = deployment(example_text(spec, replacements))
    for name in APP_FILES:
        shutil.copy(EXAMPLES / name, dep.dir / name)
    return dep


def get_json(port: int, path: str):
    result = http_get(port, path)
    assert result.failure is None, f"GET {path} on port {port}: {result}"
    return json.loads(result.body)


@contextlib.contextmanager
def client_loops(port: int, paths_per_loop):
    """One ClientLoop per entry of `paths_per_loop`, all running, each with a few successes."""
    with contextlib.ExitStack() as stack:
        loops = [stack.enter_context(ClientLoop(port, paths=paths, pause=0))
                 for paths in paths_per_loop]
        for loop in loops:
            loop.wait_for_successes(3, 20)
        yield loops


def failures_by_kind(loops) -> dict[str, int]:
    total = {}
    for loop in loops:
        for kind, count in loop.failure_counts().items():
            total[kind] = total.get(kind, 0) + count
    return total


def summaries(loops) -> str:
    return "\n".join(loop.summary() for loop in loops)
