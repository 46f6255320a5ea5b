"""Invalid specs and invalid command lines: exit 2 with a message that says where and what."""
import re

import pytest

GOOD = """name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 2

[services.web.health]
interval = "500ms"
"""

# name -> (spec, line of the error, acceptable columns: the key's or the value's (None: any),
#          texts the message must hold)
BAD_SPECS = {
    "unknown key with a suggestion": ("""name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replica = 2
""", 5, {1, 11}, ["replica", "replicas"]),
    "wrong type": ("""name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = "four"
""", 5, {1, 12}, ["replicas"]),
    "bad duration": ("""name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]

[services.web.health]
interval = "soon"
""", 7, {1, 12}, ["interval", "soon"]),
    "bad enum value": ("""name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]

[services.web.restart]
policy = "sometimes"
""", 7, {1, 10}, ["policy", "sometimes"]),
    "TOML syntax error": ("""name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = = 2
""", 5, None, []),
}

USAGE_ERRORS = [
    ["frobnicate"],
    ["up", "--no-such-option"],
    ["status", "--bogus"],
    ["validate", "one.toml", "two.toml"],
    ["scale"],
    ["scale", "web"],
    ["scale", "web=lots"],
    ["down", "--name"],
]


@pytest.mark.parametrize("case", list(BAD_SPECS))
@pytest.mark.parametrize("command", [("validate",), ("up", "-d")], ids=" ".join)
def test_bad_spec_exits_2_naming_file_line_and_column(deployment, case, command):
    spec, line, columns, needles = BAD_SPECS[case]
    dep = deployment(spec)
    run = dep.deployctl(*command, str(dep.spec_path), timeout=15)
    assert run.returncode == 2, run.describe()
    where = re.search(re.escape(str(dep.spec_path)) + r":(\d+):(\d+): ", run.stderr)
    assert where, f"no FILE:LINE:COL in stderr\n{run.describe()}"
    assert int(where[1]) == line, run.describe()
    assert columns is None or int(where[2]) in columns, run.describe()
    for needle in needles:
        assert needle in run.stderr, run.describe()
    assert dep.deployctl("status", "--name", "itest").returncode == 3, "a bad spec started"


def test_good_spec_validates(deployment):
    dep = deployment(GOOD)
    run = dep.deployctl("validate", str(dep.spec_path))
    assert run.returncode == 0, run.describe()
    run = dep.deployctl("validate")  # FILE defaults to ./deploy.toml
    assert run.returncode == 0, run.describe()


def test_missing_spec_file_exits_2_naming_it(deployment):
    dep = deployment(GOOD)
    missing = dep.dir / "no-such-spec.toml"
    run = dep.deployctl("validate", str(missing))
    assert run.returncode == 2, run.describe()
    assert str(missing) in run.stderr, run.describe()


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_bad_command_line_exits_2(deployment, args):
    dep = deployment(GOOD)  # a valid ./deploy.toml, so only the command line is wrong
    run = dep.deployctl(*args, timeout=10)
    assert run.returncode == 2, run.describe()
    assert run.stderr.strip(), "a usage error must say what is wrong"
    assert dep.deployctl("status").returncode == 3, "a bad command line started something"


@pytest.mark.parametrize("args", [["help"], ["--help"], ["--version"]], ids=" ".join)
def test_help_and_version_exit_0(deployment, args):
    dep = deployment(GOOD)
    run = dep.deployctl(*args)
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip(), run.describe()
    if args != ["--version"]:
        for command in ("up", "validate", "status", "scale", "down"):
            assert re.search(rf"\b{command}\b", run.stdout), f"help does not mention {command}"
