"""The .deb, for real: CPack packages the build tree under test (the one holding DEPLOYCTL_BIN)
once per module into a temp dir; CPack installs with prefix /usr whatever the tree's own
prefix, so this is the package packaging/build-deb.sh makes from a fresh Release tree. dpkg-deb
checks its contents and metadata; `dpkg -i` installs it on this machine; the installed
deployctl, example spec, man page, bash completion and unit are exercised; `dpkg -r` and
`dpkg -P` remove it and nothing of it remains.

Needs root (dpkg -i). If deployctl is already installed here, as a package or as files, the
tests that install fail without touching anything. Whatever the tests installed is purged at
the end, whatever happened. PID 1 here is not systemd: the unit is verified, not started.
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from harness import all_replicas, deployctl_bin, http_get, source_dir

from deb_package import (BIN, COMPLETION, EXAMPLE, FILES, LOG_DIR, MAN_PAGE, OURS, PACKAGE,
                         SYSTEM_PATH, UNIT, cpack_tree, describe, group_exists, package_slot,
                         package_status, run)


def table_commands() -> list[str]:
    """The command names of the one command table, supervisor/protocol/commands.cc."""
    source = (source_dir() / "supervisor" / "protocol" / "commands.cc").read_text()
    table = source[source.index("kCommands[]"):source.index("};")]
    names = re.findall(r'^\s*\{"([a-z-]+)",', table, re.MULTILINE)
    assert names, "found no command in supervisor/protocol/commands.cc's kCommands table"
    return names


def documented_commands(man_source: str) -> set[str]:
    """Commands with an entry of their own (.TP, then the command name) under .SH COMMANDS."""
    section = man_source.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    return set(re.findall(r"^\.TP\n\.BR? (\S+)", section, re.MULTILINE))


# --- without root: the sources agree with the command table --------------------------------

def test_man_page_source_documents_every_command_of_the_table():
    source = (source_dir() / "packaging" / "deployctl.1").read_text()
    missing = set(table_commands()) - documented_commands(source)
    assert not missing, f"packaging/deployctl.1 has no COMMANDS entry for {sorted(missing)}"


def test_help_lists_every_command_of_the_table():
    result = run([deployctl_bin(), "help"])
    assert result.returncode == 0, describe(result)
    listed = re.findall(r"^  deployctl ([a-z-]+)", result.stdout, re.MULTILINE)
    assert listed == table_commands(), result.stdout


# --- the package ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    """The .deb of the build tree under test, packaged once per module into a temp dir."""
    tree = Path(deployctl_bin()).resolve().parent.parent  # binaries are in <tree>/bin
    out = tmp_path_factory.mktemp("deb")
    yield cpack_tree(tree, out)
    shutil.rmtree(out, ignore_errors=True)


def test_package_file_name_and_metadata(deb):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert re.fullmatch(rf"deployctl_\d+\.\d+\.\d+_{arch}\.deb", deb.name), deb.name
    info = run(["dpkg-deb", "-I", str(deb)])
    assert info.returncode == 0, describe(info)
    fields = dict(re.findall(r"^ ([A-Z][\w-]*): (.*)$", info.stdout, re.MULTILINE))
    assert fields.get("Package") == PACKAGE
    assert fields.get("Section") == "admin"
    assert re.match(r".+ <.+@.+>", fields.get("Maintainer", "")), info.stdout
    assert fields.get("Description"), info.stdout
    # From dpkg-shlibdeps: the C++ runtime, libc, and libsystemd at least.
    depends = fields.get("Depends", "")
    for library in ("libc6", "libstdc++6", "libsystemd0", "passwd"):
        assert re.search(rf"(^|, ){re.escape(library)}( |,|$)", depends), \
            f"{library} not in Depends: {depends}"
    assert fields.get("Recommends") == "lego", info.stdout  # the ACME client of [tls] acme
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert re.search(rf"^\s+\d+ bytes,\s+\d+ lines\s+\*?\s*{script}\b", info.stdout,
                         re.MULTILINE), f"no {script} in the control archive:\n{info.stdout}"
    extracted = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile '{deb}' | tar -xO ./conffiles"])
    assert extracted.stdout.split() == [EXAMPLE], describe(extracted)


def test_package_holds_every_file_owned_by_root(deb):
    contents = run(["dpkg-deb", "-c", str(deb)])
    assert contents.returncode == 0, describe(contents)
    entries = {}
    for line in contents.stdout.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path.removeprefix(".")] = (mode, owner)
    for path in FILES:
        assert path in entries, f"{path} missing from the package:\n{contents.stdout}"
        assert entries[path][1] == "root/root", f"{path}: owner {entries[path][1]}"
    for path in ("/usr/bin/deployctl", "/usr/bin/deploy-server"):
        assert entries[path][0] == "-rwxr-xr-x", f"{path}: mode {entries[path][0]}"
    assert entries[EXAMPLE][0] == "-rw-r--r--"


# --- installed ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(deb):
    """Installs the .deb with dpkg -i; at the end purges it if it is still there. Fails, and
    touches nothing, if deployctl is installed already."""
    state = {"group_before": group_exists()}
    with package_slot("this file (ctest -E test_package)"):
        result = run(["dpkg", "-i", str(deb)], timeout=300)
        assert result.returncode == 0, describe(result)
        yield state


def installed_env(**extra) -> dict:
    return {**os.environ, "PATH": SYSTEM_PATH, **extra}


def test_installed_deployctl_runs(installed):
    assert package_status() == "install ok installed"
    version = run([BIN, "--version"], env=installed_env())
    assert version.returncode == 0, describe(version)
    assert re.fullmatch(r"deployctl \d+\.\d+\.\d+\n", version.stdout), version.stdout
    server = run(["/usr/bin/deploy-server", "--version"], env=installed_env())
    assert server.returncode == 0, describe(server)
    assert group_exists(), "postinst did not create the group deployctl"


def test_installed_example_validates(installed):
    result = run([BIN, "validate", EXAMPLE], env=installed_env())
    assert result.returncode == 0, describe(result)


def test_installed_example_serves_with_deploy_server_from_path(installed, deployment):
    example = Path(EXAMPLE).read_text()
    assert 'command = ["deploy-server"]' in example, "the example should use the bare name"
    assert 'listen = ["127.0.0.1:8080"]' in example
    # The same spec on a free port, in a private runtime dir.
    dep = deployment(example.replace("127.0.0.1:8080", "127.0.0.1:@PORT@"), name="example")
    dep.dir.chmod(0o755)  # replicas run as nobody in the spec's directory, as in /etc/deployctl
    dep.env = installed_env(DEPLOYCTL_RUNTIME_DIR=str(dep.runtime_dir),
                            DEPLOYCTL_ITEST_TAG=dep.tag)
    up = dep.deployctl("up", "-d", str(dep.spec_path), binary=BIN, timeout=60)
    assert up.returncode == 0, up.describe()
    status = dep.status()
    replicas = [r for r in all_replicas(status) if r["pid"]]
    assert len(replicas) == 2 and all(r["state"] == "ready" for r in replicas), status
    for replica in replicas:
        assert os.readlink(f"/proc/{replica['pid']}/exe") == "/usr/bin/deploy-server"
        uid = Path(f"/proc/{replica['pid']}/status").read_text().split("Uid:")[1].split()[0]
        assert int(uid) == 65534, f"{replica['id']} runs as uid {uid}, not nobody"
    answer = http_get(dep.port, "/whoami")
    assert answer.failure is None, answer.detail
    assert answer.body.startswith("web."), answer.body
    # The completion lists running deployments for --name.
    assert "example" in complete(["deployctl", "status", "--name", ""],
                                 env={"DEPLOYCTL_RUNTIME_DIR": str(dep.runtime_dir)})
    down = dep.deployctl("down", str(dep.spec_path), binary=BIN, timeout=60)
    assert down.returncode == 0, down.describe()


def test_installed_man_page_documents_every_command(installed):
    text = run(["zcat", MAN_PAGE]).stdout
    version = run([BIN, "--version"]).stdout.split()[-1]
    assert re.search(rf'^\.TH DEPLOYCTL 1 "[^"]*" "deployctl {re.escape(version)}"', text,
                     re.MULTILINE), "the man page's .TH line should carry the version"
    missing = set(table_commands()) - documented_commands(text)
    assert not missing, f"{MAN_PAGE} has no COMMANDS entry for {sorted(missing)}"
    # groff parses it without a warning (-ww: all warnings; -z: no output).
    lint = run(["sh", "-c", f"zcat {MAN_PAGE} | groff -man -ww -z"])
    assert lint.returncode == 0 and lint.stderr == "", describe(lint)


def complete(words: list[str], cwd: Path | None = None, env: dict | None = None) -> list[str]:
    """COMPREPLY of the installed completion for the command line `words` (the cursor is on
    the last word), computed by a real bash that sources the installed file."""
    script = (f'source {COMPLETION}\n'
              'complete -p deployctl >/dev/null || exit 3\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))\n'
              '_deployctl\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words],
                 cwd=cwd, env=installed_env(**(env or {})), timeout=30)
    assert result.returncode == 0, describe(result)
    return [line for line in result.stdout.splitlines() if line]


def test_installed_bash_completion(installed, tmp_path):
    assert complete(["deployctl", ""]) == table_commands()
    assert complete(["deployctl", "va"]) == ["validate"]
    assert set(complete(["deployctl", "up", "--"])) >= {"--detach", "--runtime-dir", "--help"}
    assert "--json" in complete(["deployctl", "status", "--"])
    assert "--json" not in complete(["deployctl", "up", "--"])
    (tmp_path / "deploy.toml").write_text(
        'name = "c"\n[services.web]\ncommand = ["x"]\n[services.web.restart]\n'
        'policy = "always"\n[services.api-v2]\ncommand = ["y"]\n')
    other = tmp_path / "sub" / "other.toml"
    other.parent.mkdir()
    other.write_text('name = "o"\n[services.worker]\ncommand = ["z"]\n')
    # Services of ./deploy.toml, then of the file named with -f.
    assert sorted(complete(["deployctl", "scale", ""], cwd=tmp_path)) == ["api-v2=", "web="]
    assert complete(["deployctl", "restart", "w"], cwd=tmp_path) == ["web"]
    assert complete(["deployctl", "restart", "-f", str(other), ""], cwd=tmp_path) == ["worker"]
    # Spec files and directories for FILE arguments.
    assert complete(["deployctl", "validate", "s"], cwd=tmp_path) == ["sub/"]
    assert complete(["deployctl", "up", "sub/"], cwd=tmp_path) == ["sub/other.toml"]


def test_installed_unit_passes_systemd_analyze_verify(installed, tmp_path):
    text = Path(UNIT).read_text()
    assert "ExecStart=/usr/bin/deployctl up /etc/deployctl/%i.toml" in text
    # A template is verified through an instance: a link named after one, to the installed file.
    instance = tmp_path / "deployctl@example.service"
    instance.symlink_to(UNIT)
    result = run(["systemd-analyze", "verify", str(instance)], timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "deployctl@" in line]
    assert result.returncode == 0 and problems == [], describe(result)


def test_remove_then_purge_leaves_nothing(installed):
    removed = run(["dpkg", "-r", PACKAGE], timeout=300)
    assert removed.returncode == 0, describe(removed)
    assert package_status().startswith("deinstall ok config-files"), package_status()
    gone = [path for path in FILES if path != EXAMPLE and os.path.lexists(path)]
    assert not gone, f"dpkg -r left {gone}"
    assert os.path.exists(EXAMPLE), "dpkg -r must keep the conffile"
    assert group_exists(), "dpkg -r must keep the group (only purge removes it)"
    # Stands in for the logs a supervisor run as root would have written (deployctl@NAME).
    Path(LOG_DIR, "example").mkdir(parents=True)
    Path(LOG_DIR, "example", "web.log").write_text("2025-01-02T03:04:05.678Z web.0 out | hi\n")

    purged = run(["dpkg", "-P", PACKAGE], timeout=300)
    assert purged.returncode == 0, describe(purged)
    assert package_status() == "", package_status()
    left = [path for path in OURS if os.path.lexists(path)]
    assert not left, f"dpkg -P left {left}"
    assert group_exists() == installed["group_before"], \
        "purge must remove the group deployctl exactly when postinst created it"
