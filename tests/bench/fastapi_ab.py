"""A/B of two sides of the FastAPI scenario (fastapi_bench.py), interleaved, to tell a
systematic throughput difference from the machine's noise (issue 12). Stdlib only:

    flock /work/bench.lock /usr/bin/python3 tests/bench/fastapi_ab.py [--pair gunicorn]
        [--rounds 7] [--seconds 8] [--json OUT] [--bin DIR]

--pair gunicorn (default): deployctl+gunicorn-uw (4 replicas of `gunicorn -w1` on fd 3) vs
bare `gunicorn -w4 -k UvicornWorker`; uvicorn: deployctl+uvicorn-std vs `uvicorn --workers 4`;
per-replica: deployctl+uvicorn-std with sockets = "per-replica" vs the shared socket;
per-replica-gunicorn: the former vs `gunicorn -w4`. Both sides run at once on 127.0.0.1, each
in a session of its own (--peer-in-wrk-session: the peer in this script's, as
fastapi_bench.py once did); each round runs wrk (-t2 -c32 keep-alive, as fastapi_bench.py) on
A then B, the order alternating round by round, so a drift in the machine's load hits both
alike. Per round and side it records, besides req/s and p99:

- conns: the established server-side connections each worker holds, sampled mid-run (how the
  kernel's shared-socket accept spread wrk's 32 connections; deployctl's kept health-check
  connections left out), sorted high to low;
- CPU, in % of one core over the run: the side's workers (leaf processes), their masters
  (gunicorn arbiters, uvicorn's supervisor), deployctl's own processes (supervisor and fd
  keeper: health checks, log pipes), wrk, and "other": the rest of the machine's busy time;
- req/cpu-s: requests per CPU-second of the side's own processes, which does not depend on how
  much of the machine the side got.

The summary: per-round ratios A/B of req/s and of req/cpu-s, their median, min-max and how
many rounds A was ahead; the rounds in which all connections sat on one worker (the side
capped at one core), per side, and the req/s ratio over the rounds where neither did. Bounded:
(2 x rounds x seconds) of load plus start-up, under 5 minutes with the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_util import (CLK_TCK, BenchError, become_subreaper, proc_stat,  # noqa: E402
                        server_connections)
from fastapi_bench import (DEPLOYCTL_SIDES, PEER_SIDES, DeployctlSide, GunicornSide,  # noqa
                           Side, is_deployctl, run_wrk)

PAIRS = {
    "gunicorn": ("deployctl+gunicorn-uw", "gunicorn -w4 UvicornWorker"),
    "uvicorn": ("deployctl+uvicorn-std", "uvicorn --workers 4"),
    # the same uvicorn replicas, SO_REUSEPORT socket each (steered) vs the one shared socket
    "per-replica": ("deployctl+uvicorn-std per-replica", "deployctl+uvicorn-std"),
    "per-replica-gunicorn": ("deployctl+uvicorn-std per-replica", "gunicorn -w4 UvicornWorker"),
}


def make_side(name: str, log_dir: Path) -> Side:
    if name in DEPLOYCTL_SIDES:
        return DeployctlSide(name, *DEPLOYCTL_SIDES[name], log_dir)
    kind = GunicornSide if name.startswith("gunicorn") else Side
    return kind(name, *PEER_SIDES[name], log_dir)


def autogroup(pid: int) -> str:
    """The scheduler autogroup of pid ("/autogroup-N"), "" where the kernel has none."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return ""


def roles(side: Side) -> dict[str, list[int]]:
    """The side's processes by role: deployctl's own, masters (with children), workers."""
    pids = side.all_pids()
    parents = {proc_stat(pid)["ppid"] for pid in pids if proc_stat(pid)}
    result = {"deployctl": [], "masters": [], "workers": []}
    for pid in pids:
        role = ("deployctl" if is_deployctl(pid) else
                "masters" if pid in parents else "workers")
        result[role].append(pid)
    return result


def cpu_ticks(pids: list[int]) -> int:
    return sum(stat["cpu_ticks"] for stat in map(proc_stat, pids) if stat)


def machine_busy_ticks() -> int:
    """CPU ticks the whole machine spent outside idle and iowait (/proc/stat), all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4]


def measure(side: Side, seconds: int) -> dict:
    """One wrk run on side, with the connection spread at mid-run and CPU by role: the side's
    own (workers, masters, deployctl), wrk's, and other: the rest of the machine's busy time
    (other engineers' builds and tests share these 2 cores)."""
    by_role = roles(side)
    before = {role: cpu_ticks(pids) for role, pids in by_role.items()}
    before_wrk, before_machine = os.times(), machine_busy_ticks()
    spread: dict[int, int] = {}
    sampler = threading.Timer(seconds / 2, lambda: spread.update(
        server_connections(side.port, by_role["workers"], by_role["deployctl"])))
    sampler.start()
    started = time.monotonic()
    result = run_wrk(side.port, seconds, close=False)
    elapsed = time.monotonic() - started
    sampler.join()
    after_wrk = os.times()

    def percent(ticks: float) -> float:
        return round(ticks / CLK_TCK / elapsed * 100, 1)

    cpu = {role: percent(cpu_ticks(pids) - before[role]) for role, pids in by_role.items()}
    wrk_s = sum(after_wrk[i] - before_wrk[i] for i in (2, 3))  # children: wrk only
    cpu["wrk"] = round(wrk_s / elapsed * 100, 1)
    machine = percent(machine_busy_ticks() - before_machine)
    cpu["other"] = round(max(0.0, machine - sum(cpu.values())), 1)
    own = (cpu["workers"] + cpu["masters"] + cpu["deployctl"]) / 100 * elapsed
    return {"requests_per_s": result["requests_per_s"], "p99_ms": result.get("p99_ms"),
            "errors": result["errors"], "conns": sorted(spread.values(), reverse=True),
            "requests_per_cpu_s": round(result["requests_per_s"] * elapsed / own) if own else 0,
            "cpu_pct": cpu, "loadavg": os.getloadavg()[0]}


def one_worker(measured: dict) -> bool:
    """Whether one worker held every connection: the side could use about one core only,
    whatever the server (the kernel queued wrk's burst of connects while that worker ran). A
    worker with a single connection still adds most of a core, so 30/1/1/0 is not this."""
    conns = measured["conns"]
    return sum(conns) > 0 and conns[0] == sum(conns)


def ratio_summary(rounds: list[dict], key: str) -> dict:
    ratios = [r["a"][key] / r["b"][key] for r in rounds]
    if not ratios:
        return {"rounds": 0}
    return {"ratios": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3),
            "min": round(min(ratios), 3), "max": round(max(ratios), 3),
            "a_ahead": sum(x > 1 for x in ratios), "rounds": len(ratios)}


def summarize(rounds: list[dict]) -> dict:
    """Ratios over every round, and over the rounds in which neither side ran on one worker."""
    spread = [r for r in rounds if not one_worker(r["a"]) and not one_worker(r["b"])]
    return {"requests_per_s": ratio_summary(rounds, "requests_per_s"),
            "requests_per_cpu_s": ratio_summary(rounds, "requests_per_cpu_s"),
            "requests_per_s, both spread": ratio_summary(spread, "requests_per_s"),
            "one_worker_rounds": {side: sum(one_worker(r[side]) for r in rounds)
                                  for side in ("a", "b")}}


def print_round(index: int, first: str, a: dict, b: dict) -> None:
    def cell(m: dict) -> str:
        cpu = m["cpu_pct"]
        return (f"{m['requests_per_s']:6.0f} {m['p99_ms']:5.1f} {m['requests_per_cpu_s']:5d} "
                f"{'/'.join(map(str, m['conns'])):<11} {cpu['workers']:5.1f} "
                f"{cpu['masters']:3.1f} {cpu['deployctl']:3.1f} {cpu['wrk']:4.1f} "
                f"{cpu['other']:4.1f}")
    print(f"  {index + 1:>2} {first} | {cell(a)} | {cell(b)} | "
          f"{a['requests_per_s'] / b['requests_per_s']:.3f} "
          f"{a['requests_per_cpu_s'] / b['requests_per_cpu_s']:.3f}  {a['loadavg']:4.1f}",
          flush=True)


def print_summary(summary: dict) -> None:
    for key, figures in summary.items():
        if key == "one_worker_rounds":
            print(f"rounds with every connection on one worker: A {figures['a']}, "
                  f"B {figures['b']}")
        elif figures["rounds"]:
            print(f"A/B {key}: median {figures['median']}, min {figures['min']}, max "
                  f"{figures['max']}; A ahead in {figures['a_ahead']} of {figures['rounds']}")


HEADER = """\
  req/s, p99 ms; req/cpu-s: requests per CPU-second of the side's own processes; conns: per
  worker, mid-run; CPU in % of one core: w workers, m masters, d deployctl, wrk, other (the
  rest of the machine); ratios A/B of req/s and req/cpu-s
  round |  req/s   p99 req/cpu conns         w   m   d   wrk other |  (B alike)  | ratios  load"""


def run(pair: str, rounds: int, seconds: int, log_dir: Path) -> dict:
    names = PAIRS[pair]
    sides = [make_side(name, log_dir) for name in names]
    try:
        for side in sides:
            side.start()
        for side in sides:
            side.wait_ready(90)
        for side in sides:  # warm-up: imports, first connections, CPU caches
            run_wrk(side.port, 2, close=False)
        groups = {side.name: sorted({autogroup(pid) for pid in roles(side)["workers"]})
                  for side in sides}
        print(f"A = {names[0]}, B = {names[1]}; wrk -t2 -c32 -d{seconds}s keep-alive; "
              f"autogroups: wrk {autogroup(os.getpid())}, workers {groups}\n{HEADER}")
        results = []
        for index in range(rounds):
            order = sides if index % 2 == 0 else sides[::-1]
            measured = {side.name: measure(side, seconds) for side in order}
            a, b = measured[names[0]], measured[names[1]]
            print_round(index, "AB" if index % 2 == 0 else "BA", a, b)
            results.append({"a": a, "b": b})
    finally:
        problems = [problem for side in sides for problem in side.close()]
    summary = summarize(results)
    print_summary(summary)
    for problem in problems:
        print(f"cleanup: {problem}", file=sys.stderr)
    return {"a": names[0], "b": names[1], "seconds": seconds, "rounds": results,
            "summary": summary, "cleanup": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="gunicorn")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--bin", type=Path, default=HERE.parents[1] / "build" / "bin")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--peer-in-wrk-session", action="store_true",
                        help="start the peer in this script's (and wrk's) session, as "
                        "fastapi_bench.py did before: one autogroup for the peer and wrk")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 15 or not 1 <= args.seconds <= 10:
        parser.error("--rounds 1..15, --seconds 1..10 (the run stays under ~5 minutes)")
    DeployctlSide.deployctl_bin = str(args.bin / "deployctl")
    Side.new_session = not args.peer_in_wrk_session
    become_subreaper()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastapi-ab-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args.pair, args.rounds, args.seconds, log_dir)
    except BenchError as error:
        print(f"fastapi_ab: {error} (logs in {log_dir})", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
