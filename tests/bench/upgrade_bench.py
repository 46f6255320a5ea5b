"""Upgrade in place under load (docs/upgrade.md): how long `deployctl upgrade` takes and how
many requests fail while the supervisor re-executes itself; beside it, systemd's own
`daemon-reexec` with a plain service under the same client loops.

Run (stdlib only): /usr/bin/python3 tests/bench/upgrade_bench.py [--upgrades N] [--crashes N]
                   [--reexecs N] [--bin DIR] [--no-systemd]

4 deploy-server replicas on one 127.0.0.1 port; two client threads run for the whole bench
(one opens a new connection per request, one keeps a connection alive). N upgrades alternate
between two copies of deployctl. Per upgrade: the CLI round trip (request, checks, exec, the
new binary's first status) and the supervisor's own exec gap (its log: "re-executing" line ->
"resumed" line). Then N crashes (--crashes): kill -9 of the supervisor, at once `up -d` of the
same spec, which adopts the replicas (docs/upgrade.md, "Crash of the supervisor"); per crash the
time from the new `up`'s start to full supervision (every replica adopted and ready in
`status`), and the failed requests of that phase. Everything is brought down at the end; every
wait is bounded.

systemd (as root): a real systemd, PID 1 of a private namespace (tests/integration/systemd_ns.py),
runs deploy-server as a plain Type=simple service on another port; under the same two client
loops, `systemctl daemon-reexec` N times. Per re-exec: the time from the call until systemd is
back (`is-system-running` answers and a job completes: `systemctl start` of a oneshot unit).
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
from harness import (ClientLoop, Deployment, deployctl_bin, free_port, http_get,  # noqa: E402
                     server_bin, service_by_name, wait_until)
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


PLAIN_SERVICE = """[Service]
Type=simple
ExecStart={server} --listen 127.0.0.1:{port}
"""
NOP_SERVICE = "[Service]\nType=oneshot\nExecStart=/bin/true\n"


def systemd_reexec_bench(reexecs: int) -> bool:
    """systemd's daemon-reexec with a plain service under the client loops; False if a request
    failed or the service's pid changed."""
    from systemd_ns import SystemdNamespace
    port = free_port()
    with SystemdNamespace() as ns:
        ns.install_unit("benchsrv.service", PLAIN_SERVICE.format(server=server_bin(), port=port))
        ns.install_unit("benchnop.service", NOP_SERVICE)
        ns.daemon_reload()
        ns.systemctl("start", "benchsrv.service")
        wait_until(lambda: http_get(port).failure is None, 10, "the plain service answering")
        pid = ns.main_pid("benchsrv.service")
        backs = []
        with ClientLoop(port, max_requests=10**6, duration=300) as fresh, \
                KeepAliveLoop(port, max_requests=10**6, duration=300) as kept:
            fresh.wait_for_successes(50, 10)
            for _ in range(reexecs):
                started = time.monotonic()
                ns.systemctl("daemon-reexec", timeout=60)
                state = ns.systemctl("is-system-running", "--wait", check=False, timeout=60)
                assert state.stdout.strip() in ("running", "degraded"), state
                ns.systemctl("start", "benchnop.service", timeout=60)
                backs.append((time.monotonic() - started) * 1000)
                count = fresh.successes
                wait_until(lambda: fresh.successes > count + 10, 10, "requests after")
        same = ns.main_pid("benchsrv.service") == pid
        print(f"systemd daemon-reexec: {reexecs} re-execs, plain service pid "
              f"{'unchanged' if same else 'CHANGED'}")
        print(f"systemd back (is-system-running + a job) ms: median "
              f"{statistics.median(backs):.0f}, max {max(backs):.0f}")
        print(f"requests: {fresh.successes} new-connection, {kept.successes} keep-alive; "
              f"failed: {len(fresh.failures)} + {len(kept.failures)}")
        return same and not fresh.failures and not kept.failures


def deployctl_upgrade_bench(upgrades: int, crash_count: int) -> bool:
    """deployctl upgrade, then kill -9 of the supervisor and adoption, under the client loops;
    False if a request failed."""
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
            for i in range(upgrades):
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
        print(f"upgrades: {upgrades}, supervisor pid {status['pid']} unchanged, "
              f"replica pids unchanged")
        print(f"CLI round trip ms: median {statistics.median(rounds):.0f}, max {max(rounds):.0f}")
        if gaps:
            print(f"exec gap ms (log, re-executing -> resumed): median "
                  f"{statistics.median(gaps):.1f}, max {max(gaps):.1f}")
        print(f"requests: {fresh.successes} new-connection, {kept.successes} keep-alive; "
              f"failed: {len(fresh.failures)} + {len(kept.failures)}")
        crash_failures = crashes(dep, crash_count) if crash_count else 0
        return not fresh.failures and not kept.failures and not crash_failures
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



def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upgrades", type=int, default=10)
    parser.add_argument("--crashes", type=int, default=5)
    parser.add_argument("--reexecs", type=int, default=3)
    parser.add_argument("--bin", default=None)
    parser.add_argument("--no-systemd", action="store_true", help="skip systemd's daemon-reexec")
    args = parser.parse_args()
    bin_dir = Path(args.bin or Path(__file__).resolve().parents[2] / "build" / "bin").resolve()
    os.environ.setdefault("DEPLOYCTL_BIN", str(bin_dir / "deployctl"))
    os.environ.setdefault("DEPLOY_SERVER_BIN", str(bin_dir / "deploy-server"))
    ok = deployctl_upgrade_bench(args.upgrades, args.crashes)
    if args.no_systemd:
        return 0 if ok else 1
    if os.geteuid() != 0:
        print("systemd daemon-reexec: not measured (needs root to boot systemd in a namespace)")
        return 0 if ok else 1
    return 0 if systemd_reexec_bench(args.reexecs) and ok else 1


if __name__ == "__main__":
    sys.exit(main())
