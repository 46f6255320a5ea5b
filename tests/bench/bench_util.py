"""Helpers every peer-benchmark scenario uses: /proc, stopping process trees, HTTP probes, free
ports, wrk's output and summaries. Stdlib only; no state."""
from __future__ import annotations

import ctypes
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

TAG_VARIABLE = "DEPLOYCTL_BENCH_TAG"  # in the env of every process a bench supervisor starts
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A scenario could not measure what it should; the message says what happened."""


# --- processes ----------------------------------------------------------------------------

def proc_stat(pid: int) -> dict | None:
    """state, ppid, start_ticks and cpu_ticks (utime + stime) of pid, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return {"state": fields[0], "ppid": int(fields[1]), "start_ticks": int(fields[19]),
            "cpu_ticks": int(fields[11]) + int(fields[12])}


def is_alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat["state"] not in ("Z", "X")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def age_s(pid: int) -> float:
    stat = proc_stat(pid)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - stat["start_ticks"] / CLK_TCK if stat else 0.0


def memory_kib(pid: int) -> dict:
    """Rss and Pss of pid in KiB (/proc/PID/smaps_rollup); zeros if it is gone."""
    values = {"rss_kib": 0, "pss_kib": 0}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower() + "_kib"] = int(rest.split()[0])
    return values


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


def socket_owners(pids) -> dict[str, int]:
    """socket inode -> the pid (of `pids`) holding it open."""
    owners = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except OSError:
            continue
    return owners


def server_connections(port: int, pids, skip_clients=()) -> dict[int, int]:
    """The established TCP connections (IPv4) on local port `port` each of `pids` holds,
    leaving out those whose client end a process in `skip_clients` holds (e.g. deployctl's
    kept health-check connections)."""
    owners = socket_owners(pids)
    clients_of = socket_owners(skip_clients)
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    skipped_ports = {row[1].split(":")[1] for row in rows if row[9] in clients_of}
    counts = dict.fromkeys(pids, 0)
    for row in rows:
        local, remote = row[1].split(":")[1], row[2].split(":")[1]
        if (int(local, 16) == port and row[3] == "01" and row[9] in owners and
                remote not in skipped_ports):
            counts[owners[row[9]]] += 1
    return counts


def become_subreaper() -> None:
    """Orphans of the supervisors we kill become our children (not pid 1's), so we reap them
    and no zombie outlives the bench."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
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


def checked_run(command: list[str], env: dict, timeout: float = 60.0) -> str:
    """Runs command; returns its output, raises BenchError with it if it exits non-zero."""
    run = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=timeout)
    output = (run.stdout + run.stderr).decode(errors="replace").strip()
    if run.returncode:
        raise BenchError(f"`{' '.join(command[:4])}{' …' if len(command) > 4 else ''}` exited "
                         f"{run.returncode}: {output}")
    return output


def wait_until(predicate, timeout: float, what: str, step: float = 0.01):
    """Polls predicate() until it returns a true value (returned); BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not reached within {timeout}s")
        time.sleep(step)


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
    return -1  # a 200 "ok" without X-Pid (deploy-server, nginx): answered, pid unknown


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
            shown = missing if len(missing) <= 8 else missing[:8] + ["…"]
            raise BenchError(f"{what}: {len(missing)} ports {shown} did not answer within "
                             f"{timeout}s")
        time.sleep(0.001)


def free_base_port(count: int) -> int:
    """A base such that base .. base+count-1 on 127.0.0.1 are free now, below the ephemeral
    range: the bench's own client connections must not take a worker's port."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randint(10000, ephemeral_low - count - 1)
        probes = []
        try:
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


# --- numbers ------------------------------------------------------------------------------

def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values)}


WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                               r"timeout (\d+)")
WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text: str) -> dict:
    """wrk's totals; p99_ms only when it ran with --latency."""
    errors = WRK_SOCKET_ERRORS.search(text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not total or not rate:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    result = {"requests": int(total[1]), "requests_per_s": float(rate[1]),
              "non_2xx": int(non_2xx[1]) if non_2xx else 0,
              "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, errors.groups()))) if errors else {}}
    if p99:
        result["p99_ms"] = float(p99[1]) * WRK_UNITS_MS[p99[2]]
    return result


def run_wrk(url: str, seconds: float, connections: int = 32, latency: bool = False) -> dict:
    """One wrk -t2 run against url; its parsed totals."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", *(["--latency"] if latency
                                                                    else []), url]
    run = subprocess.run(command, capture_output=True, timeout=seconds + 30)
    if run.returncode:
        raise BenchError(f"wrk exited {run.returncode}: {run.stderr.decode(errors='replace')}")
    return parse_wrk(run.stdout.decode(errors="replace"))


def probe_gaps(answers: Callable[[], bool], stop: threading.Event, out: dict) -> None:
    """Calls `answers` (a probe on a new connection) every ~2 ms until `stop`: out["gap_ms"] is
    the longest time from a first unanswered probe to the next answered one, out["failures"] the
    unanswered probes, out["probes"] all; out["unanswered_at_end"] if the last ones failed."""
    failed_since, out["gap_ms"], out["failures"], out["probes"] = None, 0.0, 0, 0
    while not stop.is_set():
        answered = answers()
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
