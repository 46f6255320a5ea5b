"""Upgrade in place under load (docs/upgrade.md): how long `deployctl upgrade` takes and how
many requests fail while the supervisor re-executes itself.

Run (stdlib only): /usr/bin/python3 tests/bench/upgrade_bench.py [--upgrades N] [--crashes N]
[--bin DIR]

4 deploy-server replicas on one 127.0.0.1 port; two client threads run for the whole bench
(one opens a new connection per request, one keeps a connection alive). N upgrades alternate
between two copies of deployctl. Per upgrade: the CLI round trip (request, checks, exec, the
new binary's first status) and the supervisor's own exec gap (its log: "re-executing" line ->
"resumed" line). Then N crashes (--crashes): kill -9 of the supervisor, at once `up -d` of the
same spec, which adopts the replicas (docs/upgrade.md, "Crash of the supervisor"); per crash the
time from the new `up`'s start to full supervision (every replica adopted and ready in
`status`), and the failed requests of that phase. Everything is brought down at the end; every
wait is bounded.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness import ClientLoop, Deployment, deployctl_bin, service_by_name, wait_until  # noqa: E402
from test_crash import fully_supervised, kill_supervisor  # noqa: E402
from test_upgrade import SPEC, KeepAliveLoop  # noqa: E402

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]")


def stamp(line: str) -> float:
    return datetime.strptime(STAMP.match(line)[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def exec_gaps(log: str) -> list[float]:
    """ms from each "re-executing" line to the next "resumed" line."""
    gaps, started = [], None
    for line in log.splitlines():
        if "upgrade: re-executing" in line and STAMP.match(line):
            started = stamp(line)
        elif "upgrade: deployctl" in line and "resumed" in line and started is not None:
            gaps.append((stamp(line) - started) * 1000)
            started = None
    return gaps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upgrades", type=int, default=10)
    parser.add_argument("--crashes", type=int, default=5)
    parser.add_argument("--bin", default=None)
    args = parser.parse_args()
    bin_dir = Path(args.bin or Path(__file__).resolve().parents[2] / "build" / "bin").resolve()
    os.environ.setdefault("DEPLOYCTL_BIN", str(bin_dir / "deployctl"))
    os.environ.setdefault("DEPLOY_SERVER_BIN", str(bin_dir / "deploy-server"))
    dep = Deployment(SPEC, name="upgbench")
    try:
        assert dep.up().returncode == 0, "up failed"
        dep.wait_for(lambda s: service_by_name(s, "web")["ready"] == 4, what="4 ready")
        copies = []
        for name in ("deployctl-a", "deployctl-b"):
            shutil.copy2(deployctl_bin(), dep.dir / name)
            copies.append(str(dep.dir / name))
        pids = dep.replica_pids()
        rounds = []
        with ClientLoop(dep.port, max_requests=10**6, duration=300) as fresh, \
                KeepAliveLoop(dep.port, max_requests=10**6, duration=300) as kept:
            fresh.wait_for_successes(50, 10)
            for i in range(args.upgrades):
                dep.wait_for(lambda s: all(r["state"] == "ready" for r in
                                           service_by_name(s, "web")["replicas"]), what="all ready")
                started = time.monotonic()
                run = dep.deployctl("upgrade", "--name", dep.name, "--binary", copies[i % 2],
                                    timeout=40)
                rounds.append((time.monotonic() - started) * 1000)
                assert run.returncode == 0, run.describe()
                count = fresh.successes
                wait_until(lambda: fresh.successes > count + 10, 10, "requests after")
        status = dep.status()
        assert dep.replica_pids(status) == pids, "a replica was restarted"
        gaps = exec_gaps(dep.log_text())
        print(f"upgrades: {args.upgrades}, supervisor pid {status['pid']} unchanged, "
              f"replica pids unchanged")
        print(f"CLI round trip ms: median {statistics.median(rounds):.0f}, max {max(rounds):.0f}")
        if gaps:
            print(f"exec gap ms (log, re-executing -> resumed): median "
                  f"{statistics.median(gaps):.1f}, max {max(gaps):.1f}")
        print(f"requests: {fresh.successes} new-connection, {kept.successes} keep-alive; "
              f"failed: {len(fresh.failures)} + {len(kept.failures)}")
        crash_failures = crashes(dep, args.crashes) if args.crashes else 0
        return 0 if not fresh.failures and not kept.failures and not crash_failures else 1
    finally:
        for problem in dep.close():
            print("cleanup:", problem)


def crashes(dep: Deployment, count: int) -> int:
    """kill -9 of the supervisor and `up -d` again, `count` times, under both client loops;
    returns the failed requests."""
    adopt_ms, total_ms = [], []
    with ClientLoop(dep.port, max_requests=10**6, duration=300) as fresh, \
            KeepAliveLoop(dep.port, max_requests=10**6, duration=300) as kept:
        fresh.wait_for_successes(20, 10)
        for _ in range(count):
            pids, _keeper = kill_supervisor(dep)
            killed = started = time.monotonic()
            run = dep.up()
            assert run.returncode == 0 and "adopted" in run.stdout, run.describe()
            dep.wait_for(lambda s: fully_supervised(s, pids), 10, "every replica adopted")
            done = time.monotonic()
            adopt_ms.append((done - started) * 1000)
            total_ms.append((done - killed) * 1000)
            count_before = fresh.successes
            wait_until(lambda: fresh.successes > count_before + 10, 10, "requests after")
    print(f"kill -9 of the supervisor x{count}, then `up -d` at once: full supervision ms "
          f"(from the new up's start) median {statistics.median(adopt_ms):.0f}, "
          f"max {max(adopt_ms):.0f}")
    print(f"requests during the crashes: {fresh.successes} new-connection, {kept.successes} "
          f"keep-alive; failed: {len(fresh.failures)} + {len(kept.failures)} "
          f"{(fresh.failures + kept.failures)[:3]}")
    return len(fresh.failures) + len(kept.failures)


if __name__ == "__main__":
    sys.exit(main())
