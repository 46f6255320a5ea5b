"""deployctl side by side with runit, s6, supervisord, gunicorn and nginx, in one run.

Run (stdlib only, from anywhere; --install needs root or sudo and network to Debian's mirror):

    /usr/bin/python3 tests/bench/peers.py [--install] [--quick] [--json OUT] [--bin DIR]
                                          [--only SCENARIO,...]

  --install   apt-get install the peers (runit s6 supervisor gunicorn nginx wrk) if any is missing
  --bin DIR   where `deployctl` and `deploy-server` are (default: build/bin under the repo root)
  --json OUT  also write every sample and summary as JSON to OUT
  --quick     fewer repetitions, shorter windows, 20 instead of 100 replicas in scale and
              footprint: under 2 minutes, the CI smoke test (its figures are not the targets')
  --only      a comma-separated subset of the scenarios below

The worker is tests/bench/tiny_worker.c, compiled here with `cc -O2`: an HTTP server that
answers every request with 200 "ok\\n" and an X-Pid header. Unless said otherwise every replica
listens on its own 127.0.0.1 port (base + index), so "replica i answers" means exactly that,
under every supervisor. Scenarios, each for every supervisor in the same run (docs/bench.md has
the details and the choices made):

1. recovery: 4 replicas; `kill -9` one (in turn) and time until its port answers HTTP from a
   new pid. Each kill waits until the target has run > 1.1 s: runit and s6 hold back a restart
   of a service that ran under 1 s, deployctl's bench spec resets its backoff after 500 ms, so
   every supervisor is measured on its immediate-restart path.
2. startup: from launching the supervisor until all 8 replicas answer HTTP. Also measured, as
   the floor (not a peer): `direct`, tests/bench/direct_launch.c, which only fork+execs the 8
   workers with the same argv and waits; each side is shown as a multiple of it, and
   deployctl's overhead over it in ms.
3. scale: 1 -> 100 replicas (every port answers) and back to 1 (99 workers gone), each peer its
   own way: deployctl `scale web=N`; runit new service dirs / `sv down` + `sv exit`; s6 new
   service dirs + `s6-svscanctl -a` / dirs removed + `s6-svscanctl -an`; supervisord numprocs
   + `supervisorctl update`. gunicorn is left out: TTIN/TTOU add or remove one worker per
   signal and its workers run a Python app, not the tiny worker.
4. footprint: 100 idle replicas (deployctl: HTTP health check of each every 1 s; and
   deployctl+deploy-server: `control` health, PING/PONG on the control socket) for 60 s:
   CPU time, RSS and PSS summed over the supervisor's own processes (and gunicorn's arbiter).
5. rolling: 4 replicas sharing one port (SO_REUSEPORT; deployctl: `listen`), wrk -t2 -c32
   for 10 s (quick: 3 s), and mid-way each supervisor's own restart of every replica
   (runit: `sv -w 10 restart` each service in turn; s6: `s6-svc -wr -r` each in turn;
   supervisord: `supervisorctl restart all`; deployctl: `restart`; gunicorn, with 4 sync
   workers of an equivalent WSGI app: SIGHUP). Reported: wrk's socket errors and non-2xx, and
   the longest window in which fresh connections (one every ~2 ms) got no 200. The worker does
   not speak deployctl's control protocol, so it ignores the DRAIN=1 of a rollout: the bench
   spec sets stop.timeout = 2s so the old replicas are killed while the load still runs.
6. throughput: deploy-server, 2 replicas under deployctl, against nginx with 2 workers, both
   answering GET /healthz with "ok\\n", keep-alive, `wrk -t2 -c32 --latency`: req/s and p99.
7. crash_loop: one replica that exits 1 at once, each supervisor with its own restart defaults,
   30 s (quick: 6 s): starts counted by the worker itself, and the end state in the supervisor's
   words; the crash from the very first start, and after a good start plus kill -9.

8. fastapi (only with --only fastapi, ~6 min; python3-fastapi, -uvicorn, -uvloop, -httptools,
   -hypercorn, -daphne and gunicorn installed): the same FastAPI app, 4 processes, under
   deployctl with each ASGI server vs what users run today (fastapi_bench.py says how).

Every supervisor runs in its own temp dir; every wait is bounded; every process started is
stopped by pid (the whole tree under the supervisor, frozen with SIGSTOP first so nothing is
respawned, then SIGKILL), plus any process still carrying this run's environment tag; Ctrl+C
and SIGTERM unwind through the same cleanup. Exit status: 0 if every scenario ran for every
supervisor, 1 otherwise (then the supervisors' output stays in the temp dir named on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import BenchError, become_subreaper  # noqa: E402
from fastapi_bench import measure_fastapi  # noqa: E402
from peer_capacity import measure_footprint, measure_scale  # noqa: E402
from peer_crash import measure_crash_loop  # noqa: E402
from peer_report import print_report  # noqa: E402
from peer_scenarios import measure_recovery, measure_rolling, measure_startup  # noqa: E402
from peer_supervisors import (ROLLING_ALL, ROLLING_PEERS, SUPERVISORS,  # noqa: E402
                              DeployServer, Deployctl, Direct)
from peer_throughput import measure_throughput  # noqa: E402

HERE = Path(__file__).resolve().parent
PACKAGES = {"runit": "runsvdir", "s6": "s6-svscan", "supervisor": "supervisord",
            "gunicorn": "gunicorn", "nginx": "nginx", "wrk": "wrk"}
ERRORS = (BenchError, OSError, subprocess.SubprocessError, ValueError)


def settings(quick: bool) -> dict:
    return {"kills": 3 if quick else 20, "startup_runs": 2 if quick else 10,
            "recovery_replicas": 4, "startup_replicas": 8, "wrk_seconds": 3 if quick else 10,
            "scale_to": 20 if quick else 100, "scale_rounds": 1 if quick else 3,
            "footprint_replicas": 20 if quick else 100,
            "footprint_window_s": 3.0 if quick else 60.0,
            "throughput_runs": 1 if quick else 3, "throughput_seconds": 2 if quick else 10,
            "crash_window_s": 6.0 if quick else 30.0,
            "fastapi_runs": 1 if quick else 3, "fastapi_seconds": 2 if quick else 4}


def per_supervisor(measure, kinds):
    """A scenario run once per supervisor class; a failure is recorded for that one only."""
    def run(worker: Path, bin_dir: Path, config: dict, log_dir: Path) -> dict:
        results = {}
        for kind in kinds:
            try:
                results[kind.name] = measure(kind, worker, config, log_dir)
            except ERRORS as error:
                results[kind.name] = {"error": str(error)}
        return results
    return run


def once(measure):
    """A scenario that runs every side at once; a failure is recorded for the scenario."""
    def run(worker: Path, bin_dir: Path, config: dict, log_dir: Path) -> dict:
        try:
            return measure(worker, bin_dir, config, log_dir)
        except ERRORS as error:
            return {"error": str(error)}
    return run


SCENARIOS = {
    "recovery": ("kill -9 of one of 4 replicas until a new pid answers HTTP on its port",
                 per_supervisor(measure_recovery, SUPERVISORS)),
    "startup": ("launch of the supervisor until all 8 replicas answer HTTP",
                per_supervisor(measure_startup, [Direct] + SUPERVISORS)),
    "scale": ("1 -> N replicas answering (N = 100; quick: 20), then back to 1",
              per_supervisor(measure_scale, SUPERVISORS)),
    "footprint": ("N idle replicas (100; quick: 20): the supervisor's own processes",
                  per_supervisor(measure_footprint, ROLLING_ALL)),
    "rolling": ("4 replicas on one port, wrk -t2 -c32, every replica restarted mid-way",
                per_supervisor(measure_rolling, ROLLING_ALL)),
    "throughput": ("deploy-server x2 under deployctl vs nginx, 2 workers, wrk -t2 -c32 "
                   "keep-alive", once(lambda w, b, c, d: measure_throughput(b, c, d))),
    "crash_loop": ("one replica exiting 1 at once, each supervisor's restart defaults, "
                   "side by side", once(lambda w, b, c, d:
                                        measure_crash_loop(ROLLING_PEERS, w, c, d))),
    "fastapi": ("the same FastAPI app, 4 processes: deployctl with each ASGI server vs "
                "gunicorn -w4, uvicorn --workers 4, hypercorn -w 4",
                once(lambda w, b, c, d: measure_fastapi(b, c, d))),
}
# Run by default; fastapi (Python servers, a few minutes) only when asked: --only fastapi.
DEFAULT_SCENARIOS = [name for name in SCENARIOS if name != "fastapi"]


def failed(report: dict) -> list[str]:
    """Names of the scenario runs that could not measure."""
    names = []
    for scenario in SCENARIOS:
        results = report.get(scenario)
        if results is None:
            continue
        if "error" in results:
            names.append(scenario)
        names += [f"{scenario}/{name}" for name, result in results.items()
                  if isinstance(result, dict) and "error" in result]
    return names


# --- setup --------------------------------------------------------------------------------

def install() -> None:
    """apt-get install the peers that are missing; nothing when all are there."""
    missing = [package for package, binary in PACKAGES.items() if not shutil.which(binary)]
    if not missing:
        print("peers: runit, s6, supervisor, gunicorn, nginx, wrk are installed")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
        print("peers: " + " ".join(sudo + command), flush=True)
        if subprocess.run(sudo + command, env=environment).returncode:
            sys.exit(f"peers: `{' '.join(command)}` failed: run it as root and retry")


def build_worker(out_dir: Path) -> Path:
    """Compiles tiny_worker.c and direct_launch.c (the startup floor) into out_dir; returns the
    worker; exits with the compiler's message if either fails."""
    for name in ("direct_launch", "tiny_worker"):
        build = subprocess.run(["cc", "-O2", "-o", str(out_dir / name), str(HERE / f"{name}.c")],
                               capture_output=True, text=True)
        if build.returncode:
            sys.exit(f"peers: cc -O2 {name}.c failed:\n{build.stderr}")
    return out_dir / "tiny_worker"


def check_tools(bin_dir: Path) -> None:
    for name in ("deployctl", "deploy-server"):
        if not os.access(bin_dir / name, os.X_OK):
            sys.exit(f"peers: {bin_dir / name} is not executable: build it or pass --bin DIR")
    missing = [package for package, binary in PACKAGES.items() if not shutil.which(binary)]
    if missing:
        sys.exit(f"peers: {', '.join(missing)} not installed: run with --install")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="apt-get install the peers")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--bin", type=Path, metavar="DIR",
                        default=HERE.parents[1] / "build" / "bin",
                        help="directory of deployctl and deploy-server (default build/bin)")
    parser.add_argument("--only", metavar="SCENARIO,...", default=",".join(DEFAULT_SCENARIOS),
                        help=f"run only these ({', '.join(SCENARIOS)})")
    args = parser.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    unknown = [s for s in args.only if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    return args


def build_type(bin_dir: Path) -> str:
    """CMAKE_BUILD_TYPE of the build tree holding bin_dir ("unknown" outside one)."""
    cache = bin_dir.parent / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_BUILD_TYPE:"):
                return line.split("=", 1)[1] or "unknown"
    return "unknown"


def run_all(scenarios: list[str], worker: Path, bin_dir: Path, config: dict,
            log_dir: Path) -> dict:
    report = {}
    for scenario in scenarios:
        print(f"peers: {scenario} …", file=sys.stderr, flush=True)
        report[scenario] = SCENARIOS[scenario][1](worker, bin_dir, config, log_dir)
    return report


def main() -> int:
    args = parse_args()
    if args.install:
        install()
    bin_dir = args.bin.resolve()
    check_tools(bin_dir)
    Deployctl.deployctl_bin = str(bin_dir / "deployctl")
    DeployServer.deploy_server_bin = str(bin_dir / "deploy-server")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind: cleanups run
    become_subreaper()
    config = settings(args.quick)
    if build_type(bin_dir) == "Debug":
        print(f"peers: warning: {bin_dir} is a Debug build; measure a RelWithDebInfo or Release "
              "build (packaging/dev.sh build)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    started = time.monotonic()
    meta = {"bin": str(bin_dir), "build_type": build_type(bin_dir), "quick": args.quick, "cpus": os.cpu_count(),
            "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": config,
            "logs": str(work)}
    try:
        report = run_all(args.only, build_worker(work), bin_dir, config, work)
    except KeyboardInterrupt:
        print("peers: interrupted; every supervisor started so far was stopped", file=sys.stderr)
        return 130
    meta["seconds"] = time.monotonic() - started
    report = {"meta": meta, **report}
    print_report(report, {name: title for name, (title, _) in SCENARIOS.items()})
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    problems = failed(report)
    if problems:
        print(f"peers: could not measure {', '.join(problems)}; supervisor logs kept in {work}",
              file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
