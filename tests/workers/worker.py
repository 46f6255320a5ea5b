#!/usr/bin/python3
"""A configurable replica for the deployctl end-to-end tests (test-only; stdlib only).

It speaks the worker control protocol (supervisor/protocol/control_protocol.h) on the SOCK_SEQPACKET fd
named by DEPLOYCTL_CONTROL_FD and, when it inherited a listening socket (LISTEN_FDS=1 and
LISTEN_PID equal to its pid, the sd_listen_fds rule), answers every HTTP request on fd 3 with
200 and "<replica id> <pid>" (header X-TCP-Nodelay: the accepted connection's TCP_NODELAY,
which it never sets itself). The mode, chosen by argv, says how it behaves or misbehaves:

  ok                      READY=1, answer PING with PONG; exit 0 on DRAIN=1, SIGTERM or EOF
  exit-at-once CODE       write a recognisable stderr line, exit CODE before READY
  crash-after-ready SECS  like ok, then exit 1 SECS after READY
  garbage                 like ok, then send a datagram that is not KEY=VALUE lines
  oversized               like ok, then send an 8 KiB datagram (the limit is 4 KiB)
  flood-stdout            like ok, and write "flood N" lines to stdout as fast as it can
  flood-watchdog          READY=1, then WATCHDOG=1 on the control socket as fast as it can,
                          never reading it (so never answering a PING); SIGTERM ends it
  grandchild PIDFILE      like ok, plus two `sleep 300` children: one in its process group,
                          one escaped by setsid(); writes both pids (one a line) to PIDFILE
  ignore-term             READY=1 and PONGs, but ignores SIGTERM, DRAIN=1 and EOF: only
                          SIGKILL ends it
  count N                 like ok, and after READY writes "count <id> 00000" .. N-1 and then
                          "count <id> done" to stdout, one write each (--pause SECS between);
                          with --crash, exits 1 right after the last line; with --once FILE,
                          only the run that creates FILE counts (later runs are plain ok)

Options: --events FILE appends "start|ready|exit PID SECONDS" lines (CLOCK_BOOTTIME seconds;
"start" is the fork time from /proc/self/stat) so tests can time restarts precisely.
--once FILE makes garbage/oversized misbehave only while FILE does not exist (it is created),
so the replacement replica behaves. --delay SECS: how long after READY they misbehave.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

MODES = ("ok", "exit-at-once", "crash-after-ready", "garbage", "oversized", "flood-stdout",
         "grandchild", "ignore-term", "count", "flood-watchdog")
FIRST_LISTEN_FD = 3


def replica_id():
    """SERVICE.INDEX, e.g. web.2, from DEPLOYCTL_SERVICE and DEPLOYCTL_REPLICA (the index)."""
    return f"{os.environ.get('DEPLOYCTL_SERVICE', '?')}.{os.environ.get('DEPLOYCTL_REPLICA', '?')}"


def boottime_now():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def fork_time():
    """When this process was created, in CLOCK_BOOTTIME seconds (kernel start_boottime)."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


class Events:
    """Appends one line per lifecycle event to a file shared by every run of the replica."""

    def __init__(self, path):
        self.path = path

    def record(self, what, when=None):
        if not self.path:
            return
        line = f"{what} {os.getpid()} {boottime_now() if when is None else when:.6f}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


EVENTS = Events(None)


def finish(code):
    """Ends the process at once (children are left alone on purpose)."""
    EVENTS.record("exit")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def say(text, stream):
    print(f"worker {replica_id()} {text}", file=stream, flush=True)


def control_socket():
    fd = os.environ.get("DEPLOYCTL_CONTROL_FD")
    if fd is None:
        say("error: DEPLOYCTL_CONTROL_FD is not set; run me under deployctl", sys.stderr)
        finish(2)
    return socket.socket(fileno=int(fd))


def inherited_listener():
    if os.environ.get("LISTEN_FDS") != "1":
        return None
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        say(f"LISTEN_PID={os.environ.get('LISTEN_PID')} is not my pid; not serving", sys.stderr)
        return None
    return socket.socket(fileno=FIRST_LISTEN_FD)


def answer_http(connection):
    with connection:
        connection.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = connection.recv(4096)
            if not chunk:
                return
            request += chunk
        body = f"{replica_id()} {os.getpid()}\n".encode()
        nodelay = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                           b"X-TCP-Nodelay: %d\r\nContent-Length: %d\r\n\r\n%s"
                           % (nodelay, len(body), body))


def serve_http(listener):
    while True:
        connection, _ = listener.accept()
        try:
            answer_http(connection)
        except OSError:
            pass


def start_background(target, *args):
    threading.Thread(target=target, args=args, daemon=True).start()


class Control:
    """The replica's end of the control socket."""

    def __init__(self, sock):
        self.sock = sock

    def send(self, payload):
        """Best effort: a supervisor that has gone away is not this worker's failure."""
        try:
            self.sock.send(payload)
        except OSError as error:
            say(f"control socket send failed: {error}", sys.stderr)

    def ready(self):
        self.send(b"READY=1\n")
        EVENTS.record("ready")

    def pump(self, until=None, obey=True):
        """Answers PINGs until `until` (monotonic seconds; None = forever). With obey, DRAIN=1
        and EOF end the process with 0; without, they are ignored."""
        while until is None or time.monotonic() < until:
            self.sock.settimeout(None if until is None else max(0.001, until - time.monotonic()))
            try:
                datagram = self.sock.recv(65536)
            except socket.timeout:
                return
            if not datagram:
                if obey:
                    finish(0)
                sleep_forever()
            self.handle(datagram, obey)

    def handle(self, datagram, obey):
        for line in datagram.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key == "PING":
                self.send(f"PONG={value}\n".encode())
            elif key == "DRAIN" and value == "1" and obey:
                self.send(b"STOPPING=1\n")
                finish(0)


def sleep_forever():
    while True:
        signal.pause()


def exit_zero_on_sigterm():
    signal.signal(signal.SIGTERM, lambda *_: finish(0))


def misbehaviour_allowed(once_path):
    """With --once, only the first run (the one that creates the file) misbehaves."""
    if not once_path:
        return True
    try:
        os.close(os.open(once_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return True
    except FileExistsError:
        return False


def flood_stdout():
    number = 0
    while True:
        chunk = "".join(f"flood {n}\n" for n in range(number, number + 2000)).encode()
        number += 2000
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view):]


def flood_watchdog(sock):
    """Sends WATCHDOG=1 until the socket fails (the supervisor closed it): then exits 0."""
    try:
        while True:
            sock.send(b"WATCHDOG=1\n")
    except OSError:
        finish(0)


def write_count(count, pause):
    """Numbered stdout lines, one write(2) each, so the supervisor sees them as they come."""
    for number in range(count):
        os.write(1, f"count {replica_id()} {number:05d}\n".encode())
        if pause:
            time.sleep(pause)
    os.write(1, f"count {replica_id()} done\n".encode())


def spawn_grandchildren(pidfile):
    in_group = subprocess.Popen(["/bin/sleep", "300"])
    escaped = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
    temporary = pidfile + ".tmp"
    with open(temporary, "w") as out:
        out.write(f"{in_group.pid}\n{escaped.pid}\n")
    os.rename(temporary, pidfile)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="deployctl test worker")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("argument", nargs="?", help="CODE, SECS or PIDFILE, by mode")
    parser.add_argument("--events", help="append lifecycle events to this file")
    parser.add_argument("--once", help="misbehave only if this file does not exist yet")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds after READY")
    parser.add_argument("--pause", type=float, default=0.0, help="count: seconds between lines")
    parser.add_argument("--crash", action="store_true", help="count: exit 1 after the last line")
    return parser.parse_args(argv)


def run(args):
    if args.mode == "exit-at-once":
        say(f"exit-at-once: failing before READY on purpose (pid {os.getpid()})", sys.stderr)
        finish(int(args.argument))

    if args.mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        exit_zero_on_sigterm()
    say(f"{args.mode} started (pid {os.getpid()}) on stdout", sys.stdout)
    say(f"{args.mode} started (pid {os.getpid()}) on stderr", sys.stderr)

    control = Control(control_socket())
    listener = inherited_listener()
    if listener is not None:
        start_background(serve_http, listener)
    if args.mode == "grandchild":
        spawn_grandchildren(args.argument)
    control.ready()
    if args.mode == "flood-stdout":
        start_background(flood_stdout)
    if args.mode == "flood-watchdog":
        flood_watchdog(control.sock)

    if args.mode == "count" and misbehaviour_allowed(args.once):
        if args.crash:
            write_count(int(args.argument), args.pause)
            finish(1)
        start_background(write_count, int(args.argument), args.pause)
    if args.mode == "crash-after-ready":
        control.pump(until=time.monotonic() + float(args.argument))
        say(f"crash-after-ready: crashing on purpose (pid {os.getpid()})", sys.stderr)
        finish(1)
    if args.mode in ("garbage", "oversized") and misbehaviour_allowed(args.once):
        control.pump(until=time.monotonic() + args.delay)
        say(f"{args.mode}: breaking the control protocol now", sys.stderr)
        control.send(b"\x01\x02 no equals sign" if args.mode == "garbage"
                     else b"STATUS=" + b"x" * 8184 + b"\n")
    control.pump(obey=args.mode != "ignore-term")


def main():
    global EVENTS
    args = parse_args(sys.argv[1:])
    EVENTS = Events(args.events)
    EVENTS.record("start", fork_time())
    run(args)


if __name__ == "__main__":
    main()
