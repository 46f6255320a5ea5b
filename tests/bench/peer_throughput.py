"""Throughput: deploy-server with 2 replicas under deployctl against nginx with 2 workers, both
on 127.0.0.1 answering GET /healthz with 200 "ok\\n", keep-alive, wrk -t2 -c32 --latency.
Runs alternate between the two (and which goes first), so drift in machine load hits both."""
from __future__ import annotations

import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_util import BenchError, free_base_port, kill_tree_and_tag, reap_orphans, run_wrk
from bench_util import wait_all_answer
from peer_supervisors import DeployServer

NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ default_type "text/plain; charset=utf-8"; return 200 "ok\\n"; }}
  }}
}}
"""


class Nginx:
    """nginx in the foreground with its own config, pid file and logs in a temp dir."""

    def __init__(self, workers: int, log_dir: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="pb-nginx-"))
        (self.dir / "tmp").mkdir()
        self.port = free_base_port(1)
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(workers=workers, dir=self.dir,
                                                               port=self.port))
        self.log_path = log_dir / "nginx.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                 "-e", str(self.dir / "error.log")], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)

    def close(self) -> list[str]:
        problems = []
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful stop of master and workers
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                problems.append("nginx: still running 10s after SIGQUIT, killed")
                kill_tree_and_tag(self.process.pid, "-")
                self.process.wait(5)
        reap_orphans()
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def measure_throughput(bin_dir: Path, config: dict, log_dir: Path) -> dict:
    ours = DeployServer(bin_dir / "deploy-server", 2, log_dir, shared_port=True)
    nginx = Nginx(2, log_dir)
    targets = {"deploy-server": f"http://127.0.0.1:{ours.base}/healthz",
               "nginx": f"http://127.0.0.1:{nginx.port}/healthz"}
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    try:
        ours.start()
        nginx.start()
        if ours.process.wait(60):
            raise BenchError(f"`deployctl up -d` of 2 deploy-servers failed; see {ours.log_path}")
        wait_all_answer([ours.base, nginx.port], 30.0, "deploy-server and nginx")
        for run in range(config["throughput_runs"]):
            order = list(targets) if run % 2 == 0 else list(reversed(targets))
            for name in order:
                runs[name].append(run_wrk(targets[name], config["throughput_seconds"],
                                          latency=True))
    finally:
        cleanup = ours.close() + nginx.close()
    for name, samples in runs.items():
        failed = [r for r in samples if r["non_2xx"] or sum(r["socket_errors"].values())]
        if failed:
            raise BenchError(f"{name}: wrk saw failed requests: {failed[0]}")
    result = {name: {"requests_per_s": median_of(samples, "requests_per_s"),
                     "p99_ms": median_of(samples, "p99_ms"), "runs": samples}
              for name, samples in runs.items()}
    result["ratio"] = result["deploy-server"]["requests_per_s"] / \
        result["nginx"]["requests_per_s"]
    result["cleanup"] = cleanup
    return result
