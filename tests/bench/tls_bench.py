"""HTTPS: deploy-server (2 processes sharing one listening socket, as deployctl runs 2 replicas)
against nginx (2 workers), same certificate, same run, on 127.0.0.1, GET /healthz -> "ok\\n".

Two measures, each the median of RUNS runs of wrk -t2 -c32, alternating which server goes
first so drift in machine load hits both:
  handshakes/s  every request on a new TLS connection ("Connection: close"). wrk resumes
                its TLS 1.2 session, so these are mostly abbreviated handshakes: nginx shares
                its session cache and ticket key between workers; the deploy-servers share a
                ticket key file (DEPLOYCTL_TLS_TICKET_KEY), as deployctl's replicas will
  keep-alive    requests/s over established TLS connections

usage: /usr/bin/python3 tests/bench/tls_bench.py [--bin build/bin] [--runs 3] [--seconds 5]
Prints a JSON report. Needs nginx, wrk and the openssl CLI (packaging/install-deps.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import BenchError, free_base_port, parse_wrk  # noqa: E402
from peer_throughput import Nginx  # noqa: E402

NGINX_TLS = """\
worker_processes 2;
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
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location = /healthz {{ default_type "text/plain; charset=utf-8"; return 200 "ok\\n"; }}
  }}
}}
"""

# Puts the listening socket at fd 3 with LISTEN_PID = its own pid, then execs deploy-server.
FD_WRAPPER = r"""
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[2], sys.argv[2:])
"""


def run_wrk(url: str, seconds: int, extra: list[str]) -> dict:
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", *extra, url]
    run = subprocess.run(command, capture_output=True, timeout=seconds + 30)
    if run.returncode:
        raise BenchError(f"wrk exited {run.returncode}: {run.stderr.decode(errors='replace')}")
    return parse_wrk(run.stdout.decode(errors="replace"))


def wait_https(ports: list[int], cert: str, timeout: float) -> None:
    context = ssl.create_default_context(cafile=cert)
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"nothing answers HTTPS on 127.0.0.1:{port}")
                time.sleep(0.05)


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed P-256 certificate for 127.0.0.1 (ECDSA, as most sites serve today)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


class DeployServers:
    """Two deploy-server processes accepting on one listening socket, with TLS."""

    def __init__(self, binary: Path, cert: str, key: str, share_ticket_key: bool):
        self.port = free_base_port(1)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(1024)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LISTEN_", "DEPLOYCTL_", "NOTIFY_SOCKET"))}
        env.update(DEPLOYCTL_TLS_CERT=cert, DEPLOYCTL_TLS_KEY=key)
        if share_ticket_key:
            ticket_key = Path(cert).parent / "ticket.key"
            ticket_key.write_bytes(os.urandom(80))
            env["DEPLOYCTL_TLS_TICKET_KEY"] = str(ticket_key)
        self.processes = [
            subprocess.Popen([sys.executable, "-c", FD_WRAPPER, str(listener.fileno()),
                              str(binary), "--listen", "127.0.0.1:1"],
                             env=env, pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)]
        listener.close()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def measure(targets: dict[str, str], runs: int, seconds: int) -> dict:
    samples: dict[str, dict[str, list[float]]] = {
        name: {"handshakes_per_s": [], "keepalive_requests_per_s": []} for name in targets}
    for run in range(runs):
        order = list(targets) if run % 2 == 0 else list(reversed(targets))
        for name in order:
            close = run_wrk(targets[name], seconds, ["-H", "Connection: close"])
            alive = run_wrk(targets[name], seconds, [])
            for result in (close, alive):
                if result["non_2xx"] or sum(result["socket_errors"].values()):
                    raise BenchError(f"{name}: wrk saw failed requests: {result}")
            samples[name]["handshakes_per_s"].append(close["requests_per_s"])
            samples[name]["keepalive_requests_per_s"].append(alive["requests_per_s"])
    report = {name: {key: {"median": statistics.median(values), "runs": values}
                     for key, values in measures.items()}
              for name, measures in samples.items()}
    for key in ("handshakes_per_s", "keepalive_requests_per_s"):
        report[f"ratio_{key}"] = round(report["deploy-server"][key]["median"] /
                                       report["nginx"][key]["median"], 3)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--bin", type=Path, default=root / "build" / "bin")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--no-ticket-key", action="store_true",
                        help="each deploy-server draws its own ticket key (no shared file)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    cert, key = make_certificate(work)
    ours = DeployServers(args.bin / "deploy-server", cert, key, not args.no_ticket_key)
    nginx = Nginx(2, work)
    (nginx.dir / "nginx.conf").write_text(
        NGINX_TLS.format(dir=nginx.dir, port=nginx.port, cert=cert, key=key))
    try:
        nginx.start()
        wait_https([ours.port, nginx.port], cert, 30.0)
        load_before = os.getloadavg()
        report = measure({"deploy-server": f"https://127.0.0.1:{ours.port}/healthz",
                          "nginx": f"https://127.0.0.1:{nginx.port}/healthz"},
                         args.runs, args.seconds)
        report["loadavg_before"] = [round(x, 2) for x in load_before]
        report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        report["shared_ticket_key"] = not args.no_ticket_key
        report["when"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    finally:
        ours.close()
        nginx.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
