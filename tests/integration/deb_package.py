"""The .deb in the tests: what it installs, its dpkg status, packaging a build tree with
cpack, and a machine made ready for one install (nothing of the package there before, root
supervisors' old logs set aside, everything purged after). Used by test_package.py (installs on
this machine) and test_systemd_real.py (installs under a real systemd)."""
from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

PACKAGE = "deployctl"
BIN = "/usr/bin/deployctl"
EXAMPLE = "/etc/deployctl/example.toml"
MAN_PAGE = "/usr/share/man/man1/deployctl.1.gz"
COMPLETION = "/usr/share/bash-completion/completions/deployctl"
UNIT = "/lib/systemd/system/deployctl@.service"
GROUP = "deployctl"
GROUP_MARKER_DIR = "/var/lib/deployctl"  # postinst's record that it created the group
LOG_DIR = "/var/log/deployctl"  # root supervisors' logs; purge removes them
# Every file the package must hold.
FILES = [BIN, "/usr/bin/deploy-server", UNIT,
         "/usr/share/dbus-1/system.d/org.deployctl.Supervisor1.conf", EXAMPLE,
         "/usr/share/doc/deployctl/README.md", "/usr/share/doc/deployctl/docs/cli.md",
         "/usr/share/doc/deployctl/docs/spec.md", MAN_PAGE, COMPLETION]
# Nothing of these may exist before the install or remain after the purge.
OURS = [*FILES, "/etc/deployctl", "/usr/share/doc/deployctl", GROUP_MARKER_DIR, LOG_DIR]
CPACK_TIMEOUT = 300  # seconds: cpack and dpkg-shlibdeps on 2 loaded cores
# Held while a test has the package installed: test runs of other build trees on the same
# machine (which ctest's RESOURCE_LOCK does not see) wait instead of installing, purging and
# moving LOG_DIR under each other's feet.
MACHINE_LOCK = "/var/lock/deployctl-package-test.lock"
MACHINE_LOCK_WAIT = 240  # seconds
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def describe(result: subprocess.CompletedProcess) -> str:
    return (f"`{' '.join(map(str, result.args))}` exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}")


def package_status() -> str:
    """dpkg's status of the package ("install ok installed", ...); "" if dpkg knows none."""
    result = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    status = result.stdout.strip() if result.returncode == 0 else ""
    return "" if status.endswith(" not-installed") else status


def group_exists() -> bool:
    try:
        grp.getgrnam(GROUP)
        return True
    except KeyError:
        return False


def cpack_tree(tree: Path, out: Path) -> Path:
    """The .deb of an already built CMake tree, made by cpack into `out` (CPack installs with
    prefix /usr whatever the tree's own, so this is the package build-deb.sh makes)."""
    config = tree / "CPackConfig.cmake"
    assert config.is_file(), f"{config} is missing: DEPLOYCTL_BIN must be in a CMake build tree"
    result = run(["cpack", "--config", str(config), "-G", "DEB", "-B", str(out)],
                 timeout=CPACK_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(describe(result), pytrace=False)
    debs = list(out.glob("deployctl_*.deb"))
    assert len(debs) == 1, f"cpack made {debs} in {out}"
    return debs[0]


@contextlib.contextmanager
def package_slot(what: str):
    """The machine ready for `what` to install the package: fails, touching nothing, unless
    root and neither the package nor any of its files is here. Logs an earlier root supervisor
    left in LOG_DIR are set aside (the purge deletes it) and put back at the end; whatever is
    installed at the end is purged."""
    if os.geteuid() != 0:
        pytest.fail(f"installing the package needs root (dpkg -i): run as root, or leave "
                    f"{what} out", pytrace=False)
    with open(MACHINE_LOCK, "w") as lock:
        deadline = time.monotonic() + MACHINE_LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test held {MACHINE_LOCK} for {MACHINE_LOCK_WAIT}s "
                                f"(it has the package installed)", pytrace=False)
                time.sleep(0.5)
        with _installable(what):
            yield


@contextlib.contextmanager
def _installable(what: str):
    status = package_status()
    if status:
        pytest.fail(f"the package {PACKAGE} is already on this machine ({status}); {what} "
                    f"installs and removes it, so it leaves it alone: remove it first "
                    f"(dpkg -P {PACKAGE})", pytrace=False)
    present = [path for path in OURS if path != LOG_DIR and os.path.lexists(path)]
    if present:
        pytest.fail(f"files of deployctl already exist outside a package: {present}; dpkg -i "
                    f"would overwrite them and the purge delete them: move them away first",
                    pytrace=False)
    kept_logs = Path(f"{LOG_DIR}.kept-by-test-{os.getpid()}")
    if os.path.lexists(LOG_DIR):
        os.rename(LOG_DIR, kept_logs)
    try:
        yield
    finally:
        if package_status():
            run(["dpkg", "-P", PACKAGE], timeout=300)
        shutil.rmtree(LOG_DIR, ignore_errors=True)
        if os.path.lexists(kept_logs):
            os.rename(kept_logs, LOG_DIR)
