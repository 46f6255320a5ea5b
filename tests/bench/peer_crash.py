"""Crash loop: one replica of a worker that exits 1 at once, under each supervisor's own restart
defaults, for a window of seconds: how many times it was started, and the end state in the
supervisor's own words. Two variants: `at-start` (the very first start crashes) and
`after-ready` (a good replica is killed with kill -9 and every start after that crashes). All
supervisors run side by side in the same window: the counts are set by each one's restart delays,
not by CPU."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench_util import BenchError, has_tag
from peer_supervisors import Supervisor

VARIANTS = ("at-start", "after-ready")


def starts(crash_file: Path) -> int:
    return len(crash_file.read_text().split()) if crash_file.exists() else 0


def arm_after_ready(supervisor: Supervisor, crash_file: Path) -> None:
    """Waits until the replica answers, arms the crash, kills the replica with kill -9."""
    pid = supervisor.wait_up(60.0)[supervisor.base]
    crash_file.touch()
    if pid > 0 and not has_tag(pid, supervisor.tag):
        raise BenchError(f"pid {pid} answering on {supervisor.base} is not a process of this bench")
    os.kill(pid if pid > 0 else supervisor.workers()[0], signal.SIGKILL)


def start_one(kind, worker: Path, variant: str, log_dir: Path) -> tuple[Supervisor, Path]:
    supervisor = None
    try:
        crash_file = log_dir / f"crash-{kind.name}-{variant}.pids"
        supervisor = kind(worker, 1, log_dir, worker_args=f"--crash-if {crash_file}",
                          defaults=True)
        if variant == "at-start":
            crash_file.touch()
        supervisor.start()
        return supervisor, crash_file
    except BaseException:
        if supervisor:
            supervisor.close()
        raise


def end_state(supervisor: Supervisor) -> str:
    if supervisor.name == "deployctl" and supervisor.process.poll():
        log = supervisor.log_path.read_text(errors="replace").strip().splitlines()
        return f"`up -d` exited {supervisor.process.returncode}: " + " / ".join(log[-3:])
    try:
        return " / ".join(supervisor.state().splitlines())
    except (BenchError, subprocess.SubprocessError) as error:
        return f"cannot read the state: {error}"


def measure_crash_loop(kinds, worker: Path, config: dict, log_dir: Path) -> dict:
    """Every (kind, variant) at once; per kind {variant: {starts, restarts, state}}."""
    window, running, results = config["crash_window_s"], [], {}
    try:
        for kind in kinds:
            for variant in VARIANTS:
                running.append((kind.name, variant, *start_one(kind, worker, variant, log_dir)))
        armed = time.monotonic()
        for name, variant, supervisor, crash_file in running:
            if variant == "after-ready":
                arm_after_ready(supervisor, crash_file)
        time.sleep(max(0.0, window - (time.monotonic() - armed)))  # the window is the measure
        for name, variant, supervisor, crash_file in running:
            count = starts(crash_file)
            results.setdefault(name, {})[variant] = {
                "starts": count, "restarts": max(0, count - 1) if variant == "at-start" else count,
                "state": end_state(supervisor)}
    finally:
        cleanup = [problem for _, _, supervisor, _ in running for problem in supervisor.close()]
    return {"window_s": window, "by_supervisor": results, "cleanup": cleanup}
