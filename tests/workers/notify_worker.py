"""Test worker that knows nothing of deployctl's control socket: it speaks sd_notify only.

Usage: notify_worker.py READY_DELAY_SECONDS [WATCHDOG_BEATS]
Sleeps, sends READY=1 to $NOTIFY_SOCKET, then WATCHDOG=1 every WATCHDOG_USEC/2 (systemd's
advice), WATCHDOG_BEATS times (forever if omitted), then goes silent but keeps running."""
import os
import socket
import sys
import time


def notify(message: bytes) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, address)


def main() -> None:
    time.sleep(float(sys.argv[1]))
    notify(b"READY=1\nSTATUS=serving")
    beats = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    period = int(os.environ["WATCHDOG_USEC"]) / 2e6
    while beats != 0:
        notify(b"WATCHDOG=1")
        beats -= 1
        time.sleep(period)
    time.sleep(3600)


if __name__ == "__main__":
    main()
