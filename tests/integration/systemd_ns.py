"""A real systemd, booted as PID 1 of a private PID + mount (+ cgroup) namespace, for tests.

    with SystemdNamespace() as ns:          # boots; raises BootError (with the log) on failure
        ns.install_unit("app.service", text)  # into the namespace's private /run/systemd/system
        ns.systemctl("start", "app.service")
        ns.run(["systemctl", "show", "-p", "MainPID", "--value", "app.service"]).stdout
        ns.main_pid("app.service")           # as a host pid
        ns.shared_dir                        # a directory both sides see (not under /tmp!)
    # leaving the block stops systemd and everything it started, and removes its cgroups

What it does and why:
- `unshare --pid --fork --mount --mount-proc --cgroup`: systemd is PID 1 of its own PID
  namespace, so killing it kills everything it started; the network namespace is the host's,
  so services bound to 127.0.0.1 are reachable from the test.
- Inside, before systemd starts: `mount --make-rprivate /`, private tmpfs on /run, /tmp and
  /var/tmp (systemd-tmpfiles would otherwise clean the host's /tmp), and a cgroup2 file system
  on /sys/fs/cgroup. The host runs cgroup v1 (+ a cgroup2 at /sys/fs/cgroup/unified with no
  controllers); the namespace's cgroup root is a fresh directory of the host's cgroup2
  hierarchy, so every cgroup systemd creates lives under it and is removed on stop. That
  cgroup2 has no controllers (memory is bound to v1 here): MemoryMax= is accepted but not
  enforced inside. Nothing is mounted on the host unless no cgroup2 is mounted at all, in which
  case one is mounted on a temporary directory and unmounted on stop.
- systemd boots into a target of its own (nothing of the host's multi-user.target starts: no
  nginx, cron, getty); `container=` is set so it behaves as in a container.
- /tmp, /run and /var/tmp differ inside and outside: files the units need or write go in
  `shared_dir` (a fresh directory under /var/lib/deployctl-tests, removed on stop).
- Every wait has a deadline; stop() escalates to SIGKILL of PID 1 and is idempotent.

Needs root, util-linux (unshare, nsenter) and the systemd package (/lib/systemd/systemd).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
BOOT_TARGET = "deployctl-test-boot.target"
UNIT_DIR = "/run/systemd/system"
SHARED_PARENT = "/var/lib/deployctl-tests"

_BOOT_SCRIPT = f"""
set -e
mount --make-rprivate /
for dir in /run /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$dir"; done
chmod 755 /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p {UNIT_DIR}
printf '[Unit]\\nDescription=deployctl test namespace\\n' > {UNIT_DIR}/{BOOT_TARGET}
exec {SYSTEMD} --system --unit={BOOT_TARGET} --log-target=console --log-level=notice
"""


class BootError(RuntimeError):
    pass


def _cgroup2_mounts() -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def _remove_cgroup_tree(path: Path, deadline: float) -> None:
    """rmdir every directory under path, deepest first, retrying until the deadline (a cgroup
    can only be removed once its last process has been reaped)."""
    while path.exists():
        dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, path]:
            try:
                directory.rmdir()
            except OSError:
                pass
        if not path.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


class SystemdNamespace:
    def __init__(self, boot_timeout: float = 30.0, stop_timeout: float = 15.0):
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        self.pid: int | None = None  # host pid of the namespace's PID 1 (systemd)
        self._unshare: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self._own_mount: str | None = None
        self._cgroup: Path | None = None
        self.shared_dir: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "SystemdNamespace":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Boots systemd and waits (bounded) until it has reached its boot target."""
        Path(SHARED_PARENT).mkdir(parents=True, exist_ok=True)
        self.shared_dir = Path(tempfile.mkdtemp(dir=SHARED_PARENT))
        self.shared_dir.chmod(0o755)
        self._cgroup = self._make_cgroup()
        # The shell joins the fresh cgroup, then unshare makes it the cgroup namespace's root.
        script = f'echo $$ > {self._cgroup}/cgroup.procs && exec unshare --pid --fork --mount ' \
                 f'--mount-proc --cgroup /bin/sh -c "$0"'
        self._unshare = subprocess.Popen(
            ["/bin/sh", "-c", script, _BOOT_SCRIPT], stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "container": "deployctl-test"})
        deadline = time.monotonic() + self.boot_timeout
        while self.pid is None:
            self._check_alive()
            children = _children(self._unshare.pid)
            if children and self._comm(children[0]) == "systemd":
                self.pid = children[0]
            elif time.monotonic() > deadline:
                raise BootError("systemd did not start:\n" + self.log())
            else:
                time.sleep(0.05)
        # systemctl needs the private bus socket, which appears a moment after exec.
        while self.run(["test", "-S", "/run/systemd/private"], check=False).returncode != 0:
            self._check_alive()
            if time.monotonic() > deadline:
                raise BootError("systemd's /run/systemd/private did not appear:\n" + self.log())
            time.sleep(0.05)
        remaining = max(1.0, deadline - time.monotonic())
        state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                         timeout=remaining)
        if state.stdout.strip() not in ("running", "degraded"):
            raise BootError(f"systemd is {state.stdout.strip()!r} after boot ({state.stderr.strip()})"
                            f":\n" + self.log())

    def stop(self) -> None:
        """Stops systemd and everything in the namespace; removes the cgroups. Idempotent."""
        if self._unshare and self._unshare.poll() is None:
            if self.pid:
                self._signal(signal.SIGRTMIN + 4)  # systemd: poweroff (in a container: exit)
            try:
                self._unshare.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                if self.pid:
                    self._signal(signal.SIGKILL)  # PID 1 gone: the kernel kills the namespace
                self._unshare.kill()
                self._unshare.wait(10)
        self.pid = None
        if self._cgroup:
            _remove_cgroup_tree(self._cgroup, time.monotonic() + 10)
            self._cgroup = None
        if self.shared_dir:
            shutil.rmtree(self.shared_dir, ignore_errors=True)
            self.shared_dir = None
        if self._own_mount:
            subprocess.run(["umount", self._own_mount], check=False)
            os.rmdir(self._own_mount)
            self._own_mount = None

    # --- inside the namespace -------------------------------------------------------------
    def run(self, argv: list[str], check: bool = True, timeout: float = 20.0,
            ) -> subprocess.CompletedProcess:
        """Runs argv in the namespace's mount + PID namespaces (sees its /run, its pids)."""
        assert self.pid, "the namespace is not running"
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", *argv],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout,
                                                result.stderr)
        return result

    def systemctl(self, *args: str, check: bool = True, timeout: float = 20.0):
        return self.run(["systemctl", *args], check=check, timeout=timeout)

    def install_unit(self, name: str, text: str) -> None:
        """Writes a unit (or "NAME.d/x.conf" drop-in) into the namespace's /run/systemd/system;
        call daemon_reload() afterwards."""
        path = f"{UNIT_DIR}/{name}"
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$0")" && cat > "$0"', path], check=True)
        with subprocess.Popen(["nsenter", "-t", str(self.pid), "-m", "-p", "sh", "-c",
                               'cat > "$0"', path], stdin=subprocess.PIPE) as writer:
            writer.communicate(text.encode(), timeout=10)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload", timeout=30)

    def main_pid(self, unit: str) -> int:
        """The unit's main process as a host pid (0 when it has none)."""
        inner = int(self.systemctl("show", "-p", "MainPID", "--value", unit).stdout.strip())
        if inner == 0:
            return 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) > 1 and int(ids[-1]) == inner and self._in_namespace(
                                int(ids[0])):
                            return int(ids[0])
            except (OSError, ValueError):
                continue
        return 0

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-6000:]

    # --- internals ------------------------------------------------------------------------
    def _make_cgroup(self) -> Path:
        mounts = _cgroup2_mounts()
        if not mounts:
            self._own_mount = tempfile.mkdtemp(prefix="deployctl-cgroup2-")
            subprocess.run(["mount", "-t", "cgroup2", "cgroup2", self._own_mount], check=True)
            mounts = [self._own_mount]
        path = Path(mounts[0]) / f"deployctl-test-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return path

    def _in_namespace(self, host_pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{host_pid}/ns/pid") == os.readlink(
                f"/proc/{self.pid}/ns/pid")
        except OSError:
            return False

    def _check_alive(self) -> None:
        if self._unshare.poll() is not None:
            raise BootError(f"the namespace exited with {self._unshare.returncode}:\n"
                            + self.log())

    def _signal(self, signo: int) -> None:
        try:
            os.kill(self.pid, signo)
        except ProcessLookupError:
            pass

    @staticmethod
    def _comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""
