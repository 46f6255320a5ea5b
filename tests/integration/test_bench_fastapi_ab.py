"""The measuring parts of tests/bench/fastapi_ab.py (and fastapi_bench.py's kill count) on
real sockets and processes: server_connections counts, per holding process, the established
connections on a port and leaves out those whose client end a given process holds; the A/B
summary counts one-worker rounds and ratios as documented in docs/bench.md."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import wait_until

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_util import server_connections  # noqa: E402
import fastapi_ab  # noqa: E402

SERVER = """
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)
held = []
listener.settimeout(30)
while True:
    try:
        held.append(listener.accept()[0])
    except socket.timeout:
        sys.exit(0)
"""

CLIENT = """
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(2)]
print("connected", flush=True)
time.sleep(30)
"""


@pytest.fixture
def children():
    started = []
    yield started
    for child in started:
        child.kill()
        child.wait(5)


def spawn(children, code, *args):
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                             text=True)
    children.append(child)
    return child, child.stdout.readline().strip()


def test_server_connections_per_holder_skipping_a_client(children):
    server, port = spawn(children, SERVER)
    port = int(port)
    checker, line = spawn(children, CLIENT, str(port))  # like deployctl's health connections
    assert line == "connected"
    ours = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # like wrk's
    try:
        wait_until(lambda: server_connections(port, [server.pid]) == {server.pid: 5}, 10,
                 "the server holding all 5 connections")
        assert server_connections(port, [server.pid], [checker.pid]) == {server.pid: 3}
        assert server_connections(port, [server.pid, os.getpid()], [checker.pid]) == {
            server.pid: 3, os.getpid(): 0}  # client ends are not on the server's port
    finally:
        for connection in ours:
            connection.close()


def side(conns, requests_per_s=100.0):
    return {"conns": conns, "requests_per_s": requests_per_s,
            "requests_per_cpu_s": requests_per_s}


def test_summary_counts_one_worker_rounds_and_excludes_them():
    rounds = [{"a": side([16, 16, 0, 0], 200), "b": side([32, 0, 0, 0], 100)},
              {"a": side([30, 1, 1, 0], 100), "b": side([8, 8, 8, 8], 125)},
              {"a": side([10, 10, 6, 6], 150), "b": side([20, 12, 0, 0], 100)}]
    summary = fastapi_ab.summarize(rounds)
    assert summary["one_worker_rounds"] == {"a": 0, "b": 1}
    assert summary["requests_per_s"]["ratios"] == [2.0, 0.8, 1.5]
    assert summary["requests_per_s"]["median"] == 1.5
    assert summary["requests_per_s"]["a_ahead"] == 2
    spread = summary["requests_per_s, both spread"]
    assert spread["ratios"] == [0.8, 1.5] and spread["rounds"] == 2
