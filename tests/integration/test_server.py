"""deploy-server end to end: a real process on 127.0.0.1, real sockets, real signals.

Self-contained (standard library + pytest). The binary comes from DEPLOY_SERVER_BIN. Every
wait is bounded and waits on an event: a log line, a datagram, a response, or process exit.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

BIN = os.environ.get("DEPLOY_SERVER_BIN", "")
TIMEOUT = 10.0  # seconds: the bound of every wait in this file

# Environment that would change how deploy-server starts; never inherited from the test run.
CONTROLLED_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                  "DEPLOYCTL_CONTROL_FD", "DEPLOYCTL_SERVICE", "DEPLOYCTL_REPLICA")

# Run as the child: puts the inherited sockets at fds 3 (listening) and 4 (control), sets
# LISTEN_PID to its own pid, which exec keeps, and execs deploy-server.
FD_WRAPPER = r"""
import fcntl, os, sys
listen_fd, control_fd = int(sys.argv[1]), int(sys.argv[2])
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (listen_fd, control_fd)]
os.dup2(high[0], 3)
os.dup2(high[1], 4)
for fd in (listen_fd, control_fd):
    if fd not in (3, 4):
        os.close(fd)  # a leftover copy would keep the listening socket open after a drain
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["DEPLOYCTL_CONTROL_FD"] = "4"
os.execv(sys.argv[3], sys.argv[3:])
"""


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED_ENV}
    env.update(extra)
    return env


class ServerProcess:
    """One deploy-server process; collects its stderr lines on a thread."""

    def __init__(self, argv, env, pass_fds=()):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, pass_fds=pass_fds)
        self.lines = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, pattern, timeout=TIMEOUT):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no stderr line matching {pattern!r}; got {self.lines}")
                self._changed.wait(min(remaining, 0.1))

    def port(self):
        return int(self.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    def wait_exit(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"deploy-server {self.proc.pid} still running; log {self.lines}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        self.proc.stderr.close()


@pytest.fixture
def spawn():
    """Starts deploy-server processes and kills (by PID) whichever still run at teardown."""
    started = []

    def start(*args, env=None, pass_fds=(), argv=None):
        assert BIN, "set DEPLOY_SERVER_BIN to the deploy-server binary"
        server = ServerProcess(argv or [BIN, *args], env or base_env(), pass_fds)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def standalone(spawn):
    """A standalone server on a free port, with debug endpoints; returns (process, port)."""

    def start(*args):
        server = spawn("--listen", "127.0.0.1:0", "--debug-endpoints", *args)
        return server, server.port()

    return start


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class Client:
    """A raw HTTP/1.1 client on one TCP connection, for keep-alive and pipelining."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unparsed {self.buffer!r}")
        self.buffer += chunk

    def read_response(self, head=False):
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        block, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = block.decode("latin-1").split("\r\n")
        version, status, _reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status), headers, body)

    def request(self, target, method="GET", version="1.1", headers=(), body=b""):
        self.send(build_request(target, method, version, headers, body))
        return self.read_response(head=method == "HEAD")

    def closed_by_server(self):
        """True once the server closed the connection (waits for it, bounded)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def build_request(target, method="GET", version="1.1", headers=(), body=b""):
    lines = [f"{method} {target} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: test")
    lines += list(headers)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(port, target, **kwargs):
    client = Client(port)
    try:
        return client.request(target, **kwargs)
    finally:
        client.close()


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "hello.txt").write_text("hello, world\n")
    (root / "docs" / "index.html").write_text("<p>docs</p>\n")
    (root / "big.bin").write_bytes(os.urandom(300 * 1024))
    (tmp_path / "secret.txt").write_text("outside the root\n")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    return root


# --- routes --------------------------------------------------------------------------------


def test_builtin_routes(standalone):
    server, port = standalone()
    health = get(port, "/healthz")
    assert (health.status, health.body) == (200, b"ok\n")
    assert health.headers["server"].startswith("deploy-server")
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", health.headers["date"])
    assert get(port, "/").body == b"deploy-server\n"
    assert get(port, "/whoami").body == f"standalone {server.proc.pid}\n".encode()
    missing = get(port, "/no/such/thing")
    assert missing.status == 404


def test_static_files(standalone, site):
    _server, port = standalone("--root", str(site))
    index = get(port, "/")
    assert (index.status, index.body) == (200, b"<h1>home</h1>\n")
    assert index.headers["content-type"].startswith("text/html")
    assert "last-modified" in index.headers
    hello = get(port, "/hello.txt?cache=no")
    assert (hello.status, hello.body) == (200, b"hello, world\n")
    assert hello.headers["content-type"] == "text/plain; charset=utf-8"
    assert get(port, "/docs/").body == b"<p>docs</p>\n"
    assert get(port, "/docs").body == b"<p>docs</p>\n"
    assert get(port, "/hel%6Co.txt").body == b"hello, world\n"
    big = get(port, "/big.bin")  # larger than what is sent inline: streamed in chunks
    assert big.status == 200
    assert big.body == (site / "big.bin").read_bytes()
    assert get(port, "/nope.txt").status == 404


def test_traversal_is_denied(standalone, site):
    _server, port = standalone("--root", str(site))
    for target in ("/../secret.txt", "/%2e%2e/secret.txt", "/docs/../../secret.txt",
                   "/docs%2F..%2F..%2Fsecret.txt"):
        response = get(port, target)
        assert response.status == 403, target
        assert b"outside" not in response.body
    assert get(port, "/escape.txt").status == 403  # a symlink out of the root
    assert get(port, "/hello.txt%00.html").status == 400


def test_head_has_headers_but_no_body(standalone, site):
    _server, port = standalone("--root", str(site))
    client = Client(port)
    head = client.request("/hello.txt", method="HEAD")
    assert head.status == 200
    assert head.headers["content-length"] == "13"
    health = client.request("/healthz", method="HEAD")  # same connection: nothing was left over
    assert (health.status, health.headers["content-length"], health.body) == (200, "3", b"")
    assert client.request("/healthz").body == b"ok\n"
    client.close()


def test_other_methods_get_405_and_the_body_is_skipped(standalone):
    _server, port = standalone()
    client = Client(port)
    response = client.request("/healthz", method="POST", body=b"x" * 5000)
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert client.request("/healthz").body == b"ok\n"  # the body did not leak into this one
    client.close()


# --- HTTP/1.1 connection handling ----------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(standalone):
    _server, port = standalone()
    client = Client(port)
    local = client.sock.getsockname()
    for _ in range(20):
        response = client.request("/healthz")
        assert response.status == 200
        assert "connection" not in response.headers
    assert client.sock.getsockname() == local
    closing = client.request("/healthz", headers=["Connection: close"])
    assert closing.headers["connection"] == "close"
    assert client.closed_by_server()


def test_http10_closes_unless_keep_alive_is_asked(standalone):
    _server, port = standalone()
    client = Client(port)
    kept = client.request("/healthz", version="1.0", headers=["Connection: keep-alive"])
    assert kept.headers["connection"] == "keep-alive"
    plain = client.request("/healthz", version="1.0")
    assert plain.headers["connection"] == "close"
    assert client.closed_by_server()


def test_idle_keep_alive_connections_time_out(standalone):
    _server, port = standalone("--idle-timeout", "1")
    client = Client(port)
    assert client.request("/healthz").status == 200
    started = time.monotonic()
    assert client.closed_by_server()  # waits at most TIMEOUT
    assert 0.5 < time.monotonic() - started < 3.5


def test_pipelined_requests_are_answered_in_order(standalone):
    _server, port = standalone()
    client = Client(port)
    client.send(build_request("/sleep/200") + build_request("/whoami") +
                build_request("/healthz", method="HEAD") + build_request("/missing") +
                build_request("/healthz"))
    assert client.read_response().body == b"slept 200 ms\n"
    assert client.read_response().body.startswith(b"standalone ")
    assert client.read_response(head=True).headers["content-length"] == "3"
    assert client.read_response().status == 404
    assert client.read_response().body == b"ok\n"
    client.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"BLAH\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 17000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
])
def test_bad_requests_are_answered_then_closed(standalone, request_bytes, status):
    _server, port = standalone()
    client = Client(port)
    client.send(request_bytes)
    response = client.read_response()
    assert response.status == status
    assert response.headers["connection"] == "close"
    assert client.closed_by_server()


# --- lifecycle -----------------------------------------------------------------------------


def test_sigterm_lets_the_in_flight_request_finish(standalone):
    server, port = standalone()
    idle = Client(port)
    assert idle.request("/healthz").status == 200
    busy = Client(port)
    assert busy.request("/healthz").status == 200  # accepted: the next request cannot be lost
    busy.send(build_request("/sleep/300"))
    server.proc.send_signal(signal.SIGTERM)
    response = busy.read_response()
    assert (response.status, response.body) == (200, b"slept 300 ms\n")
    assert response.headers["connection"] == "close"
    assert idle.closed_by_server()
    assert server.wait_exit() == 0
    server.wait_for_line(r"draining \(")


def test_second_sigterm_exits_at_once(standalone):
    server, port = standalone()
    busy = Client(port)
    assert busy.request("/healthz").status == 200
    busy.send(build_request("/sleep/10000"))
    server.proc.send_signal(signal.SIGINT)
    server.wait_for_line(r"draining \(")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit() == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_sd_notify_ready_and_stopping(spawn):
    name = f"deploy-server-test-{os.getpid()}-{time.monotonic_ns()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + name)
    notify.settimeout(TIMEOUT)
    server = spawn("--listen", "127.0.0.1:0", env=base_env(NOTIFY_SOCKET="@" + name))
    assert notify.recv(4096) == b"READY=1\n"
    assert get(server.port(), "/healthz").status == 200
    server.proc.send_signal(signal.SIGTERM)
    assert notify.recv(4096) == b"STOPPING=1\n"
    assert server.wait_exit() == 0
    notify.close()


# --- the worker control protocol -----------------------------------------------------------


def fields(datagram):
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


class Supervised:
    """deploy-server as deployctl runs it: an inherited listening socket as fd 3 (LISTEN_FDS)
    and a SOCK_SEQPACKET control socket as fd 4 (DEPLOYCTL_CONTROL_FD)."""

    def __init__(self, spawn, *args):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control.settimeout(TIMEOUT)
        argv = [sys.executable, "-c", FD_WRAPPER, str(listener.fileno()), str(theirs.fileno()),
                BIN, "--listen", "127.0.0.1:1", *args]  # --listen is ignored: fd 3 is used
        self.server = spawn(argv=argv, env=base_env(DEPLOYCTL_SERVICE="web", DEPLOYCTL_REPLICA="2"),
                            pass_fds=(listener.fileno(), theirs.fileno()))
        listener.close()  # the server holds the only copy now: closing it refuses connections
        theirs.close()

    def receive(self):
        return fields(self.control.recv(4096))

    def ping(self, seq):
        self.control.send(f"PING={seq}\n".encode())
        reply = self.receive()
        assert reply["PONG"] == str(seq)
        return int(reply["REQUESTS"]), int(reply["INFLIGHT"])


def refuses_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        return False
    except ConnectionRefusedError:
        return True


def wait_until(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_control_protocol_ready_ping_drain(spawn):
    supervised = Supervised(spawn, "--debug-endpoints")
    assert supervised.receive() == {"READY": "1"}
    supervised.server.wait_for_line(r"listening on 127\.0\.0\.1:\d+ \(inherited\)")
    port = supervised.port

    assert supervised.ping(1) == (0, 0)
    client = Client(port)
    assert client.request("/healthz").status == 200
    whoami = client.request("/whoami").body
    assert whoami == f"web.2 {supervised.server.proc.pid}\n".encode()
    assert get(port, "/").status == 200
    assert supervised.ping(2) == (3, 0)

    idle = Client(port)
    assert idle.request("/healthz").status == 200
    client.send(build_request("/sleep/500"))
    wait_until(lambda: supervised.ping(3)[1] == 1, "the sleep request is in flight")

    supervised.control.send(b"DRAIN=1\n")
    assert supervised.receive() == {"STOPPING": "1"}
    assert idle.closed_by_server()  # idle keep-alive connections are closed at once
    wait_until(lambda: refuses_connections(port), "the listening socket is closed")
    requests, inflight = supervised.ping(4)  # still answered while draining
    assert (requests, inflight) == (4, 1)

    response = client.read_response()
    assert (response.status, response.body) == (200, b"slept 500 ms\n")
    assert response.headers["connection"] == "close"
    assert client.closed_by_server()
    assert supervised.server.wait_exit() == 0


def test_drain_answers_a_connection_whose_request_was_not_there_yet(spawn):
    # A client that has just connected is not idle: its request may be on the wire when the
    # drain starts. It must be answered (with Connection: close), not dropped.
    supervised = Supervised(spawn)
    assert supervised.receive() == {"READY": "1"}
    fresh = Client(supervised.port)
    # Accepts are in order: once a later connection is answered, `fresh` has been accepted.
    assert get(supervised.port, "/healthz").status == 200
    supervised.control.send(b"DRAIN=1\n")
    assert supervised.receive() == {"STOPPING": "1"}
    response = fresh.request("/whoami")
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert supervised.server.wait_exit() == 0


def test_drain_answers_the_next_request_of_an_idle_keep_alive_connection(spawn):
    # A keep-alive client that got its response just before the drain may be sending its next
    # request right now (wrk does, at once). Within the drain grace it is answered, with
    # Connection: close; a connection that stays silent is closed when the grace ends.
    supervised = Supervised(spawn, "--drain-grace", "3000")
    assert supervised.receive() == {"READY": "1"}
    busy, silent = Client(supervised.port), Client(supervised.port)
    assert busy.request("/healthz").status == 200
    assert silent.request("/healthz").status == 200
    supervised.control.send(b"DRAIN=1\n")
    assert supervised.receive() == {"STOPPING": "1"}
    response = busy.request("/whoami")
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert busy.closed_by_server()
    assert silent.closed_by_server()
    assert supervised.server.wait_exit() == 0


def test_control_socket_eof_drains_and_exits(spawn):
    supervised = Supervised(spawn, "--debug-endpoints")
    assert supervised.receive() == {"READY": "1"}
    client = Client(supervised.port)
    assert client.request("/healthz").status == 200
    client.send(build_request("/sleep/300"))
    wait_until(lambda: supervised.ping(1)[1] == 1, "the sleep request is in flight")
    supervised.control.close()  # the supervisor is gone
    assert client.read_response().body == b"slept 300 ms\n"
    assert supervised.server.wait_exit() == 0
    supervised.server.wait_for_line(r"draining \(control socket closed")


def test_undecodable_control_messages_are_ignored(spawn):
    supervised = Supervised(spawn)
    assert supervised.receive() == {"READY": "1"}
    supervised.control.send(b"no equals sign\n")
    supervised.control.send(b"PING=notanumber\n")
    assert supervised.ping(9) == (0, 0)
    supervised.server.wait_for_line(r"ignoring an undecodable control message")
    supervised.control.send(b"DRAIN=1\n")
    assert supervised.receive() == {"STOPPING": "1"}
    assert supervised.server.wait_exit() == 0


# --- command line --------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=base_env())


def test_help_version_and_usage_errors():
    help_run = run_cli("--help")
    assert help_run.returncode == 0 and "--listen" in help_run.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("deploy-server ")
    for bad in (["--bogus"], ["--listen"], ["--listen", "example.com:80"], ["--listen", "1.2.3.4"]):
        result = run_cli(*bad)
        assert result.returncode == 2, bad
        assert result.stderr.startswith("deploy-server: ")


def test_runtime_errors_exit_1():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    in_use = run_cli("--listen", f"127.0.0.1:{taken.getsockname()[1]}")
    taken.close()
    assert in_use.returncode == 1
    assert "cannot listen on 127.0.0.1:" in in_use.stderr
    no_root = run_cli("--listen", "127.0.0.1:0", "--root", "/nonexistent/deploy-server-root")
    assert no_root.returncode == 1
    assert "--root /nonexistent/deploy-server-root" in no_root.stderr
    bad_fd = subprocess.run([BIN, "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                            timeout=TIMEOUT, env=base_env(DEPLOYCTL_CONTROL_FD="banana"))
    assert bad_fd.returncode == 1
    assert "DEPLOYCTL_CONTROL_FD" in bad_fd.stderr
