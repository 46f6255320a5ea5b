"""The kept `http` health probe connection against a real FastAPI app under uvicorn.

    /usr/bin/python3 tests/bench/fastapi_health.py [--bin DIR] [--seconds S] [--interval I]

4 uvicorn replicas (config/examples/fastapi, pure-Python uvicorn, one shared socket) with
`http` health on /healthz every I seconds (default 1) for S seconds (default 30). Every 2 s it
counts the supervisor's established TCP connections to the app's port (from /proc, as
`ss -tnp` shows them), and at the end reads the supervisor's probe counters and the replicas'
restarts. uvicorn closes a keep-alive connection idle for 5 s: with --interval 7 every check
finds its connection closed, which must cost a reconnect, never a failed check.
Needs python3-fastapi and python3-uvicorn (Debian 12). Exit status 0 when no probe failed,
no replica restarted and, for intervals under 5 s, the supervisor held one connection per
replica throughout.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import become_subreaper, free_base_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness import connections_to  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "fastapi"
REPLICAS = 4
UVICORN_KEEP_ALIVE_S = 5.0

SPEC = """
name = "{name}"

[[pre_start]]
name = "migrate"
command = ["/usr/bin/python3", "migrate.py"]
env = {{ APP_DB = "app.db" }}

[services.web]
command = ["/usr/bin/python3", "-m", "uvicorn", "main:app", "--fd", "3",
           "--loop", "asyncio", "--http", "h11", "--no-access-log"]
replicas = {replicas}
listen = ["127.0.0.1:{port}"]
env = {{ APP_DB = "app.db" }}

[services.web.health]
kind = "http"
path = "/healthz"
interval = "{interval}ms"
timeout = "500ms"
failures = 1
start_period = "30s"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=ROOT / "build" / "bin")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    deployctl = str(args.bin / "deployctl")
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="fastapi-health-"))
    for name in ("main.py", "migrate.py"):
        shutil.copy(EXAMPLE / name, work / name)
    port = free_base_port(1)
    (work / "deploy.toml").write_text(SPEC.format(
        name="health-bench", replicas=REPLICAS, port=port,
        interval=int(args.interval * 1000)))
    env = {**os.environ, "DEPLOYCTL_RUNTIME_DIR": str(work / "run")}

    def ctl(*command: str, timeout: float = 60.0) -> str:
        return subprocess.run([deployctl, *command], env=env, cwd=work, check=True,
                              capture_output=True, text=True, timeout=timeout).stdout

    try:
        ctl("up", "-d", str(work / "deploy.toml"), timeout=90)
        status = json.loads(ctl("status", "--json", "--name", "health-bench"))
        supervisor = status["pid"]
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:  # the window is the measurement
            time.sleep(2.0)
            samples.append(connections_to(supervisor, {port}))
        metrics = ctl("metrics", "--name", "health-bench")
        status = json.loads(ctl("status", "--json", "--name", "health-bench"))
    finally:
        subprocess.run([deployctl, "down", "--name", "health-bench"], env=env, cwd=work,
                       capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    prefix = 'deployctl_health_probes_total{service="web",result="'
    probes = {line[len(prefix):].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in metrics.splitlines() if line.startswith(prefix)}
    restarts = sum(r["restarts"] for s in status["services"] for r in s["replicas"])
    print(json.dumps({"interval_s": args.interval, "seconds": args.seconds,
                      "probes": probes, "restarts": restarts,
                      "supervisor_connections_every_2s": samples}))
    # Pre-ready probes may fail (refused) while uvicorn starts: only the window counts, and
    # there every probe failure would have restarted a replica (failures = 1).
    kept = args.interval >= UVICORN_KEEP_ALIVE_S or all(n == REPLICAS for n in samples)
    return 0 if restarts == 0 and kept else 1


if __name__ == "__main__":
    sys.exit(main())
