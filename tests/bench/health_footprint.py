"""peers.py's footprint scenario for deployctl alone: the CPU of 100 idle replicas' health checks.

    /usr/bin/python3 tests/bench/health_footprint.py [--bin DIR]... [--runs N] [--kind K]

100 tiny-worker replicas with `http` health every 1 s (--kind http, the default), or
deploy-server replicas with `control` health (--kind control), for 60 s: the supervisor's CPU
time, RSS and PSS (peer_capacity.measure_footprint), one JSON line per run. With several --bin,
the builds are run alternately, N rounds: only figures of one session compare on a shared
machine. Stdlib only.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from bench_util import become_subreaper  # noqa: E402
from peer_capacity import measure_footprint  # noqa: E402
from peer_supervisors import Deployctl, DeployServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, action="append",
                        help="a directory with deployctl and deploy-server (repeatable; "
                             "default build/bin)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--kind", choices=("http", "control"), default="http")
    args = parser.parse_args()
    bins = args.bin or [Path(__file__).resolve().parents[2] / "build" / "bin"]
    kind = Deployctl if args.kind == "http" else DeployServer
    become_subreaper()
    config = peers.settings(quick=False)
    with tempfile.TemporaryDirectory() as scratch:
        worker = peers.build_worker(Path(scratch))
        for _ in range(args.runs):
            for bin_dir in bins:
                Deployctl.deployctl_bin = str(bin_dir / "deployctl")
                DeployServer.deploy_server_bin = str(bin_dir / "deploy-server")
                result = measure_footprint(kind, worker, config, Path(scratch))
                print(json.dumps({"bin": str(bin_dir), "kind": args.kind, **result}), flush=True)


if __name__ == "__main__":
    main()
