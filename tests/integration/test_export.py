"""`deployctl export` end to end: the real binary's Kubernetes output validated strictly
against the Kubernetes OpenAPI models (offline), read back and compared with the spec
(round trip), its CLI contract (warnings at file:line:col, --strict, exit codes), and the
systemd units run by a real systemd (PID 1 of a private namespace, tests/integration/
systemd_ns.py): replicas share the socket, come back after kill -9 and stop cleanly.
Golden files are compared by the unit tests (tests/unit/export_test.cc)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from harness import deployctl_bin, free_port, http_get, server_bin, source_dir, wait_until
from systemd_ns import SystemdNamespace

sys.path.insert(0, str(source_dir() / "tests" / "export"))
import k8s_schema  # noqa: E402

EXAMPLES = ["config/examples/deploy.toml", "config/examples/example.toml",
            "config/examples/fastapi/uvicorn.toml", "config/examples/fastapi/gunicorn.toml",
            "config/examples/fastapi/notify.toml", "config/examples/fastapi/ports.toml",
            "tests/specs/good/full.toml", "tests/specs/good/minimal.toml",
            "tests/specs/good/uvicorn.toml", "tests/specs/good/gunicorn.toml",
            "tests/export/specs/edge_fd_servers.toml", "tests/export/specs/edge_quoting.toml"]


def export(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([deployctl_bin(), "export", *args], capture_output=True, text=True,
                          timeout=timeout)


def kubernetes_objects(spec: str, *extra: str) -> list[dict]:
    result = export("kubernetes", str(source_dir() / spec), "--image", "app:1", *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("spec", EXAMPLES)
def test_every_kubernetes_object_passes_the_strict_schema(spec):
    objects = kubernetes_objects(spec, "--namespace", "shop")
    assert objects
    for obj in objects:
        assert k8s_schema.validate(obj) == [], (spec, obj["kind"])
        assert obj["metadata"]["namespace"] == "shop"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "deployctl"


def test_the_schema_check_rejects_what_it_must():
    good = kubernetes_objects("config/examples/deploy.toml")[0]
    container = good["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["periodSecond"] = 1  # a typo
    assert k8s_schema.validate(good) == [
        "Deployment.spec.template.spec.containers[0].livenessProbe.periodSecond: "
        "unknown field of V1Probe"]
    container["livenessProbe"].pop("periodSecond")
    container["ports"][0]["containerPort"] = "8000"
    assert "expected int" in k8s_schema.validate(good)[0]


def probe_expectations(service: dict) -> dict:
    health = service.get("health", {})
    return {"kind": health.get("kind", "control"), "path": health.get("path"),
            "failures": health.get("failures", 3)}


def seconds(text: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "").isdigit():
            return max(1, -(-int(float(text[: -len(unit)]) * units[unit] * 1000) // 1000))
    raise ValueError(text)


@pytest.mark.parametrize("spec", ["tests/specs/good/full.toml",
                                  "config/examples/fastapi/uvicorn.toml",
                                  "tests/export/specs/edge_fd_servers.toml"])
def test_round_trip_replicas_probes_limits_commands(spec):
    toml = tomllib.loads((source_dir() / spec).read_text())
    objects = kubernetes_objects(spec)
    deployments = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o for o in objects
                   if o["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(name.replace("_", "-") for name in toml["services"])
    for name, service in toml["services"].items():
        deployment = deployments[name]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        replicas = service.get("replicas", 1)
        if replicas != "auto":
            assert deployment["spec"]["replicas"] == replicas
        # commands: the spec's argv (placeholders expanded), fd arguments swapped for binds
        command = service["command"]
        argv = command if isinstance(command, list) else command.split()
        kept = [a for a in argv if a not in ("--fd", "3", "fd://3", "--bind=fd://3", "--bind")
                and "{" not in a]
        assert all(a in container["command"] for a in kept), (argv, container["command"])
        # limits
        memory = service.get("memory", {}).get("max")
        limits = container.get("resources", {}).get("limits", {})
        if memory is None:
            assert "memory" not in limits
        elif isinstance(memory, int):
            assert limits["memory"] == str(memory)
        else:
            assert int(limits["memory"]) == 512 * 1024 * 1024 and memory == "512MiB"
        # probes
        expected = probe_expectations(service)
        probe = container.get("livenessProbe")
        if expected["kind"] == "none":
            assert probe is None
            continue
        if expected["kind"] == "control" and not service.get("listen") and not service.get("port"):
            assert probe is None
            continue
        assert probe["failureThreshold"] == expected["failures"]
        assert container["readinessProbe"] == probe
        health = service.get("health", {})
        assert probe["periodSeconds"] == seconds(health.get("interval", "1s"))
        assert probe["timeoutSeconds"] == seconds(health.get("timeout", "500ms"))
        start = seconds(health.get("start_period", "30s"))
        assert container["startupProbe"]["failureThreshold"] * probe["periodSeconds"] >= start
        if expected["kind"] == "http":
            assert probe["httpGet"]["path"] == expected["path"]
        if expected["kind"] == "exec":
            assert probe["exec"]["command"][0] == health["command"][0]
        # stop and rollout
        stop = service.get("stop", {}).get("timeout", "30s")
        assert pod["terminationGracePeriodSeconds"] == seconds(stop)
        rollout = service.get("rollout", {})
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert rolling == {"maxSurge": rollout.get("max_surge", 1),
                           "maxUnavailable": rollout.get("max_unavailable", 0)}


def test_warnings_cite_the_key_and_strict_makes_them_fatal(tmp_path):
    spec = source_dir() / "tests/specs/good/full.toml"
    result = export("kubernetes", str(spec), "--image", "app:1", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert f"{spec}:42:1: warning: services.web.stop.signal: " in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shop-web.yaml",
                                                                  "shop-worker.yaml"]
    strict = export("kubernetes", str(spec), "--image", "app:1", "--strict",
                    "-o", str(tmp_path / "strict"))
    assert strict.returncode == 2
    assert "--strict: nothing written" in strict.stderr
    assert not (tmp_path / "strict").exists()


def test_usage_and_spec_errors_exit_2(tmp_path):
    deploy = str(source_dir() / "config/examples/deploy.toml")
    no_image = export("kubernetes", deploy)
    assert no_image.returncode == 2 and "--image" in no_image.stderr
    assert export("nomad", deploy).returncode == 2
    assert export("systemd", deploy, "--image", "x").returncode == 2  # not a systemd option
    typo = tmp_path / "typo.toml"
    typo.write_text('[services.web]\ncommand = "x"\n[export.kubernetes]\nimgae = "a:1"\n')
    result = export("kubernetes", str(typo))
    assert result.returncode == 2
    assert f"{typo}:4:1: export.kubernetes.imgae:" in result.stderr and "image" in result.stderr


# --- systemd: the exported units under a real systemd ---------------------------------------

SYSTEMD_SPEC = """
name = "nsdemo"

[[pre_start]]
name = "prepare"
command = ["/bin/sh", "-c", "echo prepared > @DIR@/prepared"]

[services.web]
command = ["@SERVER@", "--root", "@DIR@"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]

[services.web.restart]
backoff = { initial = "200ms", max = "1s" }

[services.web.stop]
timeout = "5s"
"""


def host_mounts() -> list[str]:
    return sorted(line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())


def test_systemd_units_run_the_replicas_on_one_shared_socket():
    port = free_port()
    mounts_before = host_mounts()
    replicas = ["nsdemo-web@0.service", "nsdemo-web@1.service"]
    with SystemdNamespace() as ns:
        work = ns.shared_dir  # the namespace has its own /tmp
        spec = work / "nsdemo.toml"
        spec.write_text(SYSTEMD_SPEC.replace("@SERVER@", server_bin()).replace(
            "@DIR@", str(work)).replace("@PORT@", str(port)))
        (work / "index.html").write_text("hello from systemd\n")
        result = export("systemd", str(spec), "-o", str(work / "units"))
        assert result.returncode == 0, result.stderr
        units = {p.name: p.read_text() for p in (work / "units").iterdir()}
        assert sorted(units) == ["nsdemo-pre-start-prepare.service", "nsdemo-web.socket",
                                 "nsdemo-web@.service", "nsdemo.target"]
        for name, text in units.items():
            ns.install_unit(name, text)
        ns.daemon_reload()
        ns.systemctl("start", "nsdemo.target", timeout=30)
        assert (work / "prepared").read_text() == "prepared\n"
        pids = [ns.main_pid(unit) for unit in replicas]
        assert all(pids), ns.systemctl("status", "nsdemo.target", check=False).stdout
        # Both replicas hold the one listening socket systemd bound, as under deployctl.
        assert http_get(port, "/index.html").body.startswith("hello from systemd")
        inodes = [os.readlink(f"/proc/{pid}/fd/3") for pid in pids]
        assert inodes[0] == inodes[1] and inodes[0].startswith("socket:")
        # kill -9: systemd restarts that replica; the other serves meanwhile.
        os.kill(pids[0], signal.SIGKILL)
        assert http_get(port, "/index.html").status == 200
        wait_until(lambda: ns.main_pid(replicas[0]) not in (0, pids[0]), 10,
                   "replica 0 restarted by systemd")
        # Served again (under the sanitizers on a loaded machine a fresh replica may take
        # seconds to reach its accept loop while it already shares the socket).
        wait_until(lambda: http_get(port, "/index.html", timeout=2).status == 200, 20,
                   "the socket answers after the restart")
        # Stopping the target stops the replicas and closes the socket.
        ns.systemctl("stop", "nsdemo.target", timeout=30)
        # The target's stop job can finish while its PartOf= units are still deactivating.
        wait_until(lambda: ns.systemctl("is-active", *replicas, "nsdemo-web.socket",
                                        check=False).stdout.split() == ["inactive"] * 3,
                   20, "every replica and the socket inactive")
        assert ns.main_pid(replicas[0]) == 0
        assert http_get(port, "/index.html", timeout=1).failure == "refused"
    assert host_mounts() == mounts_before  # nothing left mounted on the host
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
