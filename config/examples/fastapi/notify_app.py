#!/usr/bin/python3
"""A tiny HTTP app (standard library only) that reports readiness and liveness the systemd way:
sd_notify datagrams on $NOTIFY_SOCKET. It knows nothing of deployctl's control protocol.

- Serves GET / ("notify-app <replica> <pid>") and GET /healthz on the inherited listening
  socket, fd 3 (LISTEN_FDS=1 and LISTEN_PID = its own pid, sd_listen_fds' rule).
- Serves and sends READY=1 once its startup work is done (--startup-delay SECONDS simulates it).
- While $WATCHDOG_USEC is set, sends WATCHDOG=1 every half of it, as sd_watchdog_enabled(3)
  advises; a frozen app stops sending it and is found unhealthy.
- On SIGTERM sends STOPPING=1, stops serving and exits 0.
"""
import argparse
import http.server
import os
import signal
import socket
import sys
import threading
import time

FIRST_LISTEN_FD = 3


def sd_notify(state: str) -> bool:
    """Sends `state` (KEY=VALUE lines) to $NOTIFY_SOCKET; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: its name starts with a NUL byte
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC in seconds, or None when no watchdog is asked for (or it is meant
    for another process: $WATCHDOG_PID names a pid that is not ours)."""
    usec = os.environ.get("WATCHDOG_USEC")
    owner = os.environ.get("WATCHDOG_PID")
    if not usec or (owner and owner != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def inherited_listener() -> socket.socket:
    if os.environ.get("LISTEN_FDS") != "1" or os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("notify-app: expected one listening socket as fd 3 (LISTEN_FDS=1, LISTEN_PID "
                 "= my pid); run it under deployctl with `listen` set")
    return socket.socket(fileno=FIRST_LISTEN_FD)


def replica_id() -> str:
    """SERVICE.INDEX (e.g. web.2), from what deployctl passes every replica."""
    return f"{os.environ.get('DEPLOYCTL_SERVICE', '?')}.{os.environ.get('DEPLOYCTL_REPLICA', '?')}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "ok\n")
        elif self.path == "/":
            self.reply(200, f"notify-app {replica_id()} {os.getpid()}\n")
        else:
            self.reply(404, "not found\n")

    def reply(self, status: int, body: str):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # one line per request on stdout, not stderr
        print(f"notify-app: {self.command} {self.path}", flush=True)


def serve(listener: socket.socket) -> http.server.ThreadingHTTPServer:
    """Serves on the already bound and listening `listener` in a background thread."""
    server = http.server.ThreadingHTTPServer(listener.getsockname(), Handler,
                                             bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-delay", type=float, default=0.0,
                        help="seconds of (simulated) startup work before READY=1")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    listener = inherited_listener()
    if stop.wait(args.startup_delay):  # clients wait in the listen backlog meanwhile
        return 0
    server = serve(listener)
    sd_notify("READY=1\nSTATUS=serving")
    print(f"notify-app: sent READY=1 after {args.startup_delay}s", flush=True)

    interval = watchdog_interval()
    while not stop.wait(interval):  # interval None: just wait for SIGTERM
        sd_notify("WATCHDOG=1")
    sd_notify("STOPPING=1")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
