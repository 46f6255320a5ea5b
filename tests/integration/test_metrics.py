"""Metrics (docs/metrics.md): `deployctl metrics` and GET /metrics pass `promtool check metrics`,
a real Prometheus server scrapes a deployment and sees a kill -9 as one restart for a signal,
misbehaving scrapers do not stall the supervisor, and a scrape of 100 replicas is cheap.
Deployments are named "metrics": test_memory.py looks for cgroups of its own ("itest") while
this file runs beside it."""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import all_ready, free_port, replaced, sleepers, source_dir, wait_until

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"

SERVERS = """
name = "@NAME@"

[[pre_start]]
name = "check"
command = ["true"]

[metrics]
listen = "127.0.0.1:METRICS_PORT"

[services.web]
command = @SERVER_COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.health]
kind = "http"
interval = "200ms"
timeout = "200ms"

[services.web.memory]
max = "512MiB"

[services.web.stop]
timeout = "2s"
"""


def need(binary: str) -> None:
    if not Path(binary).is_file():
        pytest.fail(f"{binary} is missing: run packaging/install-deps.sh (Debian's prometheus)",
                    pytrace=False)


def with_metrics(spec: str, port: int) -> str:
    return spec.replace("METRICS_PORT", str(port))


def scrape(port: int, path: str = "/metrics", timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:PORT/PATH."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(data)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def somaxconn() -> int:
    """The listen backlog the supervisor's sockets get (SOMAXCONN, capped by the sysctl)."""
    return min(4096, int(Path("/proc/sys/net/core/somaxconn").read_text()))


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)


def status_seconds(dep) -> float:
    """Seconds until the supervisor answers a status request on its management socket."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(dep.socket_path))
        client.sendall(b'{"command": "status"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(65536)
            assert chunk, "the supervisor closed the management connection"
            reply += chunk
    assert json.loads(reply)["ok"]
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_metrics_command_and_http_pass_promtool(deployment):
    need(PROMTOOL)
    port = free_port()
    dep = deployment(with_metrics(SERVERS, port), name="metrics")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    wait_until(lambda: "result=\"pass\"} 0" not in dep.deployctl("metrics", str(dep.spec_path)).stdout,
               10, "a passing health probe in the metrics")
    run = dep.deployctl("metrics", str(dep.spec_path))
    assert run.returncode == 0, run.describe()
    check = promtool_check(run.stdout)
    assert check.returncode == 0 and check.stderr == "", check.stderr + check.stdout
    for line in ('deployctl_replicas{service="web",state="ready"} 2',
                 'deployctl_replicas_desired{service="web"} 2',
                 'deployctl_restarts_total{service="web",reason="signal"} 0',
                 'deployctl_replica_up{service="web",index="1"} 1',
                 'deployctl_replica_memory_limit_bytes{service="web",index="0"} 536870912',
                 'deployctl_prestart_steps_total{step="check",result="ok"} 1',
                 'deployctl_prestart_steps_total{step="check",result="failed"} 0',
                 'deployctl_prestart_step_duration_seconds_count{step="check"} 1',
                 f'deployctl_listen_queue_limit{{service="web",address="127.0.0.1:{dep.port}"}} '
                 f'{somaxconn()}'):
        assert line in run.stdout.splitlines(), run.stdout
    assert "pid=" not in run.stdout
    status, content_type, body = scrape(port)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    check = promtool_check(body)
    assert check.returncode == 0 and check.stderr == "", check.stderr + check.stdout
    by_name = dep.deployctl("metrics", "--name", dep.name)
    assert by_name.returncode == 0 and "deployctl_build_info" in by_name.stdout
    check_dashboard_against(body)


DASHBOARD = Path("config/examples/grafana/deployctl-dashboard.json")


def check_dashboard_against(exposition: str) -> None:
    """The example Grafana dashboard is valid JSON whose queries name only metrics of a real
    scrape (a histogram's _bucket/_sum/_count series count as its family)."""
    dashboard = json.loads((source_dir() / DASHBOARD).read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [variable.get("query", "") for variable in dashboard["templating"]["list"]]
    used = {name for expr in exprs for name in re.findall(r"\b(?:deployctl|process)_[a-z_]+", expr)}
    assert len(used) >= 15, used
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", exposition, re.MULTILINE))
    missing = used - exported
    assert not missing, f"{DASHBOARD} uses metrics that a scrape does not have: {sorted(missing)}"


def prometheus_query(port: int, query: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as reply:
        answer = json.loads(reply.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def query_value(port: int, query: str) -> float | None:
    result = prometheus_query(port, query)
    return float(result[0]["value"][1]) if result else None


class PrometheusServer:
    """A real Prometheus on loopback with its own data dir, scraping `target` every second."""

    def __init__(self, directory: Path, target: str):
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: deployctl\n    static_configs:\n"
                          f"      - targets: ['{target}']\n")
        self.log = open(directory / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def ready(self) -> bool:
        assert self.process.poll() is None, "prometheus exited; see its log"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


def test_prometheus_sees_a_kill_as_one_restart_for_a_signal(deployment):
    need(PROMETHEUS)
    metrics_port = free_port()
    dep = deployment(with_metrics(SERVERS, metrics_port), name="metrics")
    assert dep.up().returncode == 0
    status = dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    prometheus = PrometheusServer(dep.dir, f"127.0.0.1:{metrics_port}")
    try:
        wait_until(prometheus.ready, 30, "prometheus to be ready")
        restarts = 'deployctl_restarts_total{service="web",reason="signal"}'
        ready = 'deployctl_replicas{service="web",state="ready"}'
        wait_until(lambda: query_value(prometheus.port, ready) == 2, 20,
                   "a scrape with 2 ready replicas")
        assert query_value(prometheus.port, restarts) == 0
        assert query_value(prometheus.port, 'up{job="deployctl"}') == 1
        victim = status["services"][0]["replicas"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        dep.wait_for(lambda s: replaced(s, victim["id"], victim["pid"]) and all_ready(s, 2),
                     what="the killed replica replaced")
        wait_until(lambda: query_value(prometheus.port, restarts) == 1, 20,
                   "prometheus to see one restart for a signal")
        wait_until(lambda: query_value(prometheus.port, ready) == 2, 20,
                   "prometheus to see 2 ready replicas again")
        for reason in ("exit", "oom", "health"):
            assert query_value(prometheus.port,
                               f'deployctl_restarts_total{{service="web",reason="{reason}"}}') == 0
    finally:
        prometheus.stop()


def test_misbehaving_scrapers_do_not_stall_the_supervisor(deployment, measure):
    metrics_port = free_port()
    dep = deployment(with_metrics(SERVERS, metrics_port), name="metrics")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_ready(s, 2), what="2 ready replicas")
    pid = dep.supervisor_pid
    scrape(metrics_port)
    rss_before = rss_bytes(pid)

    assert raw_exchange(metrics_port, b"hello there\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(metrics_port, b"GET /x HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert raw_exchange(metrics_port, b"X" * 9000).startswith(b"HTTP/1.1 431 ")

    clients = []
    try:
        never_finishes = socket.create_connection(("127.0.0.1", metrics_port))
        never_finishes.sendall(b"GET /metr")  # and nothing more
        clients.append(never_finishes)
        never_reads = socket.socket()
        never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        never_reads.connect(("127.0.0.1", metrics_port))
        never_reads.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")  # never reads the answer
        clients.append(never_reads)
        for _ in range(200):
            client = socket.create_connection(("127.0.0.1", metrics_port))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        latencies = [status_seconds(dep) for _ in range(5)]
        measure(f"status with 202 open scrapes: slowest of 5 {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 0.1, latencies
        codes = {}
        for client in clients[2:]:
            client.settimeout(10)
            head = client.recv(12)
            codes[head] = codes.get(head, 0) + 1
        assert set(codes) <= {b"HTTP/1.1 200", b"HTTP/1.1 503"}, codes
        assert codes.get(b"HTTP/1.1 200", 0) >= 1, codes
        measure(f"200 concurrent scrapes: {codes}")
        # The one that never finishes its request is closed after the exchange's time limit.
        never_finishes.settimeout(10)
        started = time.monotonic()
        try:
            assert never_finishes.recv(100) == b""
        except ConnectionResetError:
            pass  # closed with its unread request: also closed
        assert time.monotonic() - started < 7
    finally:
        for client in clients:
            client.close()
    assert scrape(metrics_port)[0] == 200
    # Past 32 exchanges at once, a scrape is refused at once rather than queued.
    idle = [socket.create_connection(("127.0.0.1", metrics_port)) for _ in range(40)]
    try:
        wait_until(lambda: scrape(metrics_port)[0] == 503, 10, "a scrape refused with 503")
    finally:
        for client in idle:
            client.close()
    wait_until(lambda: scrape(metrics_port)[0] == 200, 10, "scrapes served again")
    growth = rss_bytes(pid) - rss_before
    measure(f"supervisor RSS growth after the bad scrapers: {growth / 1024:.0f} KiB")
    # Under ASan freed memory waits in its quarantine (up to 256 MiB) before reuse, so the
    # sanitized build's RSS grows further while staying bounded.
    sanitized = os.environ.get("DEPLOYCTL_SANITIZED") == "1"
    assert growth < (300 if sanitized else 16) * 1024 * 1024


def test_a_scrape_of_100_replicas_is_cheap(deployment, measure):
    """Measures the supervisor's CPU per scrape (the 5 ms target is judged in docs/bench.md from
    this figure). The assertion is only a guard against gross regressions: the suite also runs
    under the sanitizers on a loaded machine, where timings stretch several-fold."""
    metrics_port = free_port()
    spec = sleepers(100) + f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    dep = deployment(spec, name="metrics")
    assert dep.up(timeout=60).returncode == 0
    dep.wait_for(lambda s: all_ready(s, 100), timeout=30, what="100 ready replicas")
    pid = dep.supervisor_pid
    scrapes = 200
    body = scrape(metrics_port)[2]
    assert body.count("deployctl_replica_up{") == 100
    idle_start, wall_start = cpu_seconds(pid), time.monotonic()
    time.sleep(1.0)  # what the supervisor spends without scrapes, for comparison
    idle = (cpu_seconds(pid) - idle_start) / (time.monotonic() - wall_start)
    before, started = cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        assert scrape(metrics_port)[0] == 200
    spent, wall = cpu_seconds(pid) - before, time.monotonic() - started
    per_scrape_ms = (spent - idle * wall) / scrapes * 1000
    measure(f"100 replicas: {per_scrape_ms:.2f} ms of supervisor CPU per scrape "
            f"({scrapes} scrapes, {len(body)} bytes each, idle {idle * 1000:.2f} ms/s)")
    assert per_scrape_ms < 25
