"""Files deployctl reads that are not regular files (issue 11, finding 2): a FIFO, a directory
or a device as the spec or as an env_file is refused at once with a clear error, never read
until it ends (a device never does) and never waited on (a FIFO without a writer)."""
import os
import time

import pytest


APP = """name = "@NAME@"

[services.app]
command = ["/bin/sh", "-c", "exec sleep 300"]
@EXTRA@
"""

# kind -> (how to make one at `path`, the error it gives)
KINDS = {
    "fifo": (lambda path: os.mkfifo(path), "is a FIFO, not a regular file"),
    "directory": (lambda path: os.mkdir(path), "is a directory, not a regular file"),
    "device": (lambda path: os.symlink("/dev/zero", path), "is a character device, not a regular file"),
}

PROMPT = 5.0  # seconds: far above the milliseconds these take, far below a hang


@pytest.mark.parametrize("command", [("validate",), ("up", "-d")], ids=" ".join)
@pytest.mark.parametrize("kind", KINDS)
def test_special_spec_file_exits_2_at_once(deployment, kind, command):
    dep = deployment(APP.replace("@EXTRA@", ""))
    make, message = KINDS[kind]
    spec = dep.dir / f"special-{kind}.toml"
    make(spec)
    started = time.monotonic()
    run = dep.deployctl(*command, str(spec), timeout=PROMPT * 3)
    assert time.monotonic() - started < PROMPT, run.describe()
    assert run.returncode == 2, run.describe()
    assert str(spec) in run.stderr and message in run.stderr, run.describe()


def test_spec_over_the_size_limit_exits_2_naming_it(deployment):
    dep = deployment(APP.replace("@EXTRA@", ""))
    spec = dep.dir / "huge.toml"
    spec.write_text(dep.spec_path.read_text() + "#" * (4 << 20) + "\n")
    run = dep.deployctl("validate", str(spec))
    assert run.returncode == 2, run.describe()
    assert "is larger than the limit of 4194304 bytes (4 MiB)" in run.stderr, run.describe()


@pytest.mark.parametrize("kind", KINDS)
def test_special_env_file_fails_the_start_at_once(deployment, kind):
    dep = deployment(APP.replace("@EXTRA@", 'env_file = "app.env"'))
    make, message = KINDS[kind]
    make(dep.dir / "app.env")
    started = time.monotonic()
    run = dep.up(timeout=PROMPT * 3)
    assert time.monotonic() - started < PROMPT, run.describe()
    assert run.returncode == 1, run.describe()
    assert "cannot read env_file" in run.stderr and message in run.stderr, run.describe()
