#!/usr/bin/python3
"""A replica that eats memory on purpose (test-only; stdlib only).

It sends READY=1 on the control socket (DEPLOYCTL_CONTROL_FD) and answers PING with PONG, then
waits for the file GO_DIR/go-<its pid> (so a test can watch the pid before anything happens),
then allocates and touches memory at --rate MiB/s in --step KiB chunks, up to --up-to MiB
(then holds it). After every step it appends "<CLOCK_MONOTONIC seconds> <pid> <PSS bytes>" to
--log, so a test can tell when it crossed a size and measure how long until it was killed.
DRAIN=1, SIGTERM or EOF on the control socket make it exit 0.
"""
import argparse
import os
import socket
import sys
import threading
import time


def pss_bytes():
    """Proportional set size of this process, from /proc/self/smaps_rollup."""
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def answer_control(sock):
    """PING -> PONG until DRAIN=1 or EOF, then exit 0."""
    while True:
        try:
            datagram = sock.recv(65536)
        except OSError:
            datagram = b""
        if not datagram:
            os._exit(0)
        for line in datagram.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key == "PING":
                sock.send(f"PONG={value}\n".encode())
            elif key == "DRAIN":
                os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0, help="MiB per second")
    parser.add_argument("--step", type=int, default=256, help="KiB per allocation")
    parser.add_argument("--up-to", type=float, default=4096.0, help="MiB, then hold")
    parser.add_argument("--go-dir", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    sock = socket.socket(fileno=int(os.environ["DEPLOYCTL_CONTROL_FD"]))
    sock.send(b"READY=1\n")
    threading.Thread(target=answer_control, args=(sock,), daemon=True).start()

    go = os.path.join(args.go_dir, f"go-{os.getpid()}")
    while not os.path.exists(go):
        time.sleep(0.005)
    print(f"memory_hog {os.getpid()}: allocating {args.rate} MiB/s", flush=True)

    step = args.step * 1024
    interval = step / (args.rate * 1024 * 1024)
    kept, total = [], 0
    next_mark = 16 * 1024 * 1024
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    started = time.monotonic()
    while total < args.up_to * 1024 * 1024:
        kept.append(b"\x01" * step)  # allocated and written: resident
        total += step
        now, pss = time.monotonic(), pss_bytes()
        os.write(log, f"{now:.6f} {os.getpid()} {pss}\n".encode())
        if pss >= next_mark:
            print(f"memory_hog {os.getpid()}: PSS crossed {next_mark >> 20} MiB", flush=True)
            next_mark *= 2
        delay = started + (total / step) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"memory_hog {os.getpid()}: holding {total >> 20} MiB", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
