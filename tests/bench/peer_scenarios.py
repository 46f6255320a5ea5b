"""The first three peer scenarios: recovery after kill -9, startup, rolling restart under load.
Each measure_* takes (supervisor class, worker binary, settings, log dir) and returns a dict of
samples and summaries; BenchError if it cannot measure."""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench_util import (BenchError, age_s, answering_pid, has_tag, parse_wrk, probe_gaps,
                        summary, wait_all_answer)
from peer_supervisors import STABLE_AGE_S, Supervisor


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
        supervisor.wait_up(30.0)
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


def measure_rolling(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    supervisor = kind(worker, 4, log_dir, shared_port=True)
    seconds = config["wrk_seconds"]
    stop, gaps = threading.Event(), {}
    prober = threading.Thread(target=probe_gaps, args=(
        lambda: answering_pid(supervisor.base, timeout=1.0) is not None, stop, gaps))
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


