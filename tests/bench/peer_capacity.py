"""Scenarios with many replicas: scale 1 -> N -> 1, and the supervisor's footprint with 100 idle
replicas. Same calling convention as peer_scenarios.py."""
from __future__ import annotations

import time
from pathlib import Path

from bench_util import (CLK_TCK, BenchError, answering_pid, memory_kib, proc_stat, summary,
                        wait_all_answer, wait_until)
from peer_supervisors import Supervisor


def time_scale(supervisor: Supervisor, count: int, timeout: float) -> float:
    """ms from giving the scale command until exactly `count` workers run and ports
    base .. base+count-1 all answer."""
    started = time.monotonic()
    supervisor.scale_to(count)
    remaining = lambda: max(0.1, timeout - (time.monotonic() - started))  # noqa: E731
    wait_until(lambda: len(supervisor.workers()) == count, remaining(),
               f"{supervisor.name}: {count} workers after scale")
    wait_all_answer(supervisor.ports, remaining(), f"{supervisor.name}: scale to {count}")
    return (time.monotonic() - started) * 1000


def measure_scale(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    """Starts 1 replica, then per round: scale to N (all answer), back to 1 (N-1 gone)."""
    top, up_ms, down_ms = config["scale_to"], [], []
    supervisor = kind(worker, 1, log_dir, max_replicas=top)
    try:
        supervisor.start()
        supervisor.wait_up(60.0)
        for _ in range(config["scale_rounds"]):
            up_ms.append(time_scale(supervisor, top, 60.0))
            down_ms.append(time_scale(supervisor, 1, 60.0))
            if answering_pid(supervisor.base) is None:
                raise BenchError(f"{supervisor.name}: replica 0 stopped answering on scale")
    finally:
        cleanup = supervisor.close()
    return {"to": top, "up_ms": summary(up_ms), "down_ms": summary(down_ms),
            "up_samples_ms": up_ms, "down_samples_ms": down_ms, "cleanup": cleanup}


def cpu_ticks(pids: list[int]) -> int:
    return sum(stat["cpu_ticks"] for stat in map(proc_stat, pids) if stat)


def measure_footprint(kind, worker: Path, config: dict, log_dir: Path) -> dict:
    """N idle replicas (deployctl: HTTP health checks every 1 s): the supervisor's own processes'
    CPU over the window, then their summed RSS and PSS."""
    count, window = config["footprint_replicas"], config["footprint_window_s"]
    supervisor = kind(worker, count, log_dir)
    try:
        supervisor.start()
        supervisor.wait_up(60.0)
        own = supervisor.own_pids()
        before, started = cpu_ticks(own), time.monotonic()
        while time.monotonic() - started < window:  # the window is the measurement
            if not all(proc_stat(pid) for pid in own):
                raise BenchError(f"{supervisor.name}: a supervisor process died in the window")
            time.sleep(0.2)
        ticks, elapsed = cpu_ticks(own) - before, time.monotonic() - started
        memory = [memory_kib(pid) for pid in supervisor.own_pids()]
        workers = len(supervisor.workers())
    finally:
        cleanup = supervisor.close()
    if workers != count:
        raise BenchError(f"{supervisor.name}: {workers} of {count} workers after the window")
    return {"replicas": count, "processes": len(memory), "window_s": elapsed,
            "cpu_ms": ticks * 1000 / CLK_TCK, "cpu_percent": ticks / CLK_TCK / elapsed * 100,
            "rss_kib": sum(m["rss_kib"] for m in memory),
            "pss_kib": sum(m["pss_kib"] for m in memory), "cleanup": cleanup}
