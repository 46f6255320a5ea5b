"""Real apps under deployctl: the FastAPI examples of config/examples/fastapi/ (uvicorn on the
shared socket, gunicorn, an sd_notify app, per-replica ports), pre-start steps, rolling restart
and reload. The example specs run as written, but for their name, their ports and what a test
says it changes (asserted present, so an edit of an example cannot silently weaken a test)."""
import os
import shutil
import signal
import time

import pytest

from harness import (EXAMPLES, all_ready, client_loops, deploy_example, deployctl_bin,
                     failures_by_kind, free_port_range, get_json, http_get, is_alive,
                     process_started_at, replaced, replica_by_id, run_command, running_replicas,
                     service_by_name, summaries, wait_gone, wait_until)

EXAMPLE_SPECS = ("uvicorn.toml", "gunicorn.toml", "notify.toml", "ports.toml",
                 "uvicorn-standard.toml", "hypercorn.toml", "daphne.toml", "quickstart.toml")
SEED_ITEMS = [{"id": 1, "name": "apple"}, {"id": 2, "name": "banana"},
              {"id": 3, "name": "cherry"}]
APP_START_TIMEOUT = 45  # `up -d` of Python replicas on a busy 2-core machine
CONCURRENCY = 4  # client loops running at once while a replica is killed or replaced


# --- the examples validate ----------------------------------------------------------------

@pytest.mark.parametrize("spec", EXAMPLE_SPECS)
def test_every_example_spec_validates(spec, tmp_path):
    run = run_command([deployctl_bin(), "validate", str(EXAMPLES / spec)], dict(os.environ),
                      tmp_path, 15, tmp_path)
    assert run.returncode == 0, run.describe()
    assert "ok" in run.stdout, run.describe()


# --- (a) uvicorn x3 on the shared socket --------------------------------------------------

def test_uvicorn_replicas_serve_the_migrated_db_and_survive_kill_9(deployment, measure):
    dep = deploy_example(deployment, "uvicorn.toml",
                         {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"'})
    database = dep.dir / "app.db"
    assert not database.exists()

    run = dep.up(timeout=APP_START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 3), dep.diagnostics()
    migrated_at = database.stat().st_mtime
    for replica_id, pid in dep.replica_pids(status).items():
        started = process_started_at(pid)
        assert started is not None and started >= migrated_at - 0.011, \
            f"{replica_id} (pid {pid}) started before the pre-start step wrote the database"
    assert get_json(dep.port, "/items") == SEED_ITEMS

    victim = dep.replica_pids(status)["web.1"]
    paths = [("/", "/items")] * CONCURRENCY
    with client_loops(dep.port, paths) as loops:
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        dep.wait_for(lambda s: replaced(s, "web.1", victim) and all_ready(s, 3), timeout=30,
                     what="web.1 replaced by a new ready uvicorn")
        kill_to_ready = time.monotonic() - killed_at
        for loop in loops:
            loop.wait_for_successes(loop.successes + 5, 20)

    failures = failures_by_kind(loops)
    resets = failures.pop("reset", 0)
    measure(f"uvicorn x3, kill -9 of one: {sum(loop.successes for loop in loops)} ok, {resets} reset "
            f"(in flight in the killed process, at most {CONCURRENCY}), other failures "
            f"{failures}; replacement ready after {kill_to_ready * 1000:.0f} ms")
    assert failures == {}, summaries(loops)
    assert resets <= CONCURRENCY, summaries(loops)


# --- (b) gunicorn on fd 3 -------------------------------------------------------------------

GUNICORN_COMMAND = '["/usr/bin/python3", "-m", "gunicorn", "main:app",'
GUNICORN_WITH_BIND = ('["/usr/bin/env", "-u", "LISTEN_FDS", "-u", "LISTEN_PID", '
                      '"/usr/bin/python3", "-m", "gunicorn", "main:app", "--bind", "fd://3",')


@pytest.mark.parametrize("variant", ["socket-activation", "bind-fd"])
def test_gunicorn_serves_on_the_inherited_socket_and_is_ready(deployment, variant):
    replacements = {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"'}
    if variant == "bind-fd":
        replacements[GUNICORN_COMMAND] = GUNICORN_WITH_BIND
    dep = deploy_example(deployment, "gunicorn.toml", replacements)

    run = dep.up(timeout=APP_START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 2), dep.diagnostics()
    assert get_json(dep.port, "/items") == SEED_ITEMS
    answered_by = wait_until(lambda: get_json(dep.port, "/")["replica"], 10, "GET /")
    assert answered_by in ("web.0", "web.1")
    assert "Bad file descriptor" not in dep.log_text() + dep.service_log(), dep.diagnostics()


# --- (c) sd_notify: READY=1 and WATCHDOG=1 through NOTIFY_SOCKET ----------------------------

NOTIFY_INTERVAL = 0.3  # seconds: the test's health interval, replacing the example's 1s
STARTUP_DELAY = 0.5  # notify.toml's --startup-delay


def test_notify_app_is_ready_at_its_ready_and_kept_healthy_by_its_watchdog(deployment, measure):
    dep = deploy_example(deployment, "notify.toml", {
        '"127.0.0.1:8001"': '"127.0.0.1:@PORT@"',
        'interval = "1s"': f'interval = "{int(NOTIFY_INTERVAL * 1000)}ms"',
        'timeout = "500ms"': 'timeout = "200ms"',
        f'"--startup-delay", "{STARTUP_DELAY}"': f'"--startup-delay", "{STARTUP_DELAY}"',  # kept
    })
    dep.up_foreground()

    starting_uptimes: dict[str, int] = {}

    def every_replica_seen_starting_then_ready(status):
        for replica in service_by_name(status, "web")["replicas"]:
            if replica["state"] == "starting" and replica["pid"] is not None:
                starting_uptimes[replica["id"]] = max(starting_uptimes.get(replica["id"], 0),
                                                      replica["uptime_ms"] or 0)
        return all_ready(status, 2) and len(starting_uptimes) == 2

    try:
        status = dep.wait_for(every_replica_seen_starting_then_ready, timeout=20,
                              what="web.0 and web.1 seen starting, then ready")
    except AssertionError as error:
        raise AssertionError(f"{error}\nseen starting (uptime ms): {starting_uptimes}") from None
    for replica in service_by_name(status, "web")["replicas"]:
        assert replica["uptime_ms"] >= STARTUP_DELAY * 1000, \
            f"{replica['id']} ready before it sent READY=1: {replica}"
    measure(f"notify app: longest uptime seen while starting {starting_uptimes} ms, "
            f"READY=1 after {STARTUP_DELAY}s")
    answer = http_get(dep.port, "/")
    assert answer.failure is None and answer.body.startswith("notify-app web."), answer

    pids = dep.replica_pids(status)
    dep.wait_for(lambda s: all(r["health"] == "healthy" for r in running_replicas(s, "web")),
                 timeout=5, what="web.0 and web.1 healthy (a WATCHDOG=1 answered a check)")
    watched_until = time.monotonic() + 6 * NOTIFY_INTERVAL
    while time.monotonic() < watched_until:
        for replica in service_by_name(dep.status(), "web")["replicas"]:
            assert (replica["state"], replica["health"], replica["restarts"]) == \
                ("ready", "healthy", 0), f"without control-protocol PONGs: {replica}"
            assert replica["pid"] == pids[replica["id"]], replica
        time.sleep(NOTIFY_INTERVAL / 3)

    # Frozen, it sends no WATCHDOG=1: that alone must fail its checks.
    frozen = pids["web.0"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        status = dep.wait_for(lambda s: replaced(s, "web.0", frozen), timeout=15,
                              what="the frozen web.0 replaced after missing its watchdog")
    finally:
        if is_alive(frozen):
            os.kill(frozen, signal.SIGCONT)
    assert replica_by_id(status, "web.0")["last_exit"]["reason"] == "health", status
    assert replica_by_id(status, "web.1")["pid"] == pids["web.1"]


# --- (d) per-replica ports ------------------------------------------------------------------

def test_per_replica_ports_each_answer_with_their_own_replica(deployment):
    base = free_port_range(3)
    dep = deploy_example(deployment, "ports.toml", {"port = 9000": f"port = {base}"})

    run = dep.up(timeout=APP_START_TIMEOUT)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 3), dep.diagnostics()
    pids = dep.replica_pids(status)
    for index in range(3):
        answer = get_json(base + index, "/")
        assert answer["replica"] == f"web.{index}", (base + index, answer)
        assert answer["pid"] == pids[f"web.{index}"], (answer, pids)
    assert get_json(base + 2, "/items") == SEED_ITEMS


# --- (e) a failing pre-start step -----------------------------------------------------------

FAILING_STEP = """
name = "@NAME@"

[[pre_start]]
name = "check"
command = ["@PYTHON@", "-c", "open('@DIR@/check-ran', 'w').close()"]

[[pre_start]]
name = "db-migrate"
command = ["@PYTHON@", "migrate.py"]
env = { APP_DB = "@DIR@/no-such-dir/app.db" }

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok", "--events", "@DIR@/events"]
replicas = 2
"""


def test_failing_pre_start_step_fails_up_and_starts_no_replica(deployment):
    dep = deployment(FAILING_STEP)
    shutil.copy(EXAMPLES / "migrate.py", dep.dir / "migrate.py")

    run = dep.up(timeout=30)
    assert run.returncode == 1, run.describe()
    assert "db-migrate" in run.stderr, run.describe()  # the step's name
    assert "migrate: cannot write the database" in run.stderr, run.describe()  # its last line
    assert (dep.dir / "check-ran").exists(), "the first step did not run before the second"
    assert not (dep.dir / "events").exists(), "a replica was started after a failed step"
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


# --- (f) rolling restart --------------------------------------------------------------------

ROLLING = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 4
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "5s"
"""


def test_rolling_restart_replaces_every_replica_without_a_failed_request(deployment, measure):
    dep = deployment(ROLLING)
    assert dep.up().returncode == 0
    old = dep.replica_pids()
    assert len(old) == 4

    paths = [("/whoami",), ("/sleep/100",), ("/sleep/100",), ("/whoami", "/sleep/100")]
    with client_loops(dep.port, paths) as loops:
        run = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=30)
        assert run.returncode == 0, run.describe()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 3, 20)

    status = dep.status()
    web = service_by_name(status, "web")
    assert (web["desired"], web["ready"]) == (4, 4), web
    new = dep.replica_pids(status)
    assert len(new) == 4 and not set(new.values()) & set(old.values()), (old, new)
    assert wait_gone(old.values(), 5) == [], "old replicas still running after restart"
    measure(f"rolling restart of 4: {run.seconds * 1000:.0f} ms, "
            f"{sum(loop.successes for loop in loops)} requests ok, failures {failures_by_kind(loops)}")
    assert failures_by_kind(loops) == {}, summaries(loops)


# --- (g) reload -----------------------------------------------------------------------------

RELOADABLE = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = REPLICAS
listen = ["127.0.0.1:@PORT@"]
"""

EXTRA_SERVICE = """
[services.jobs]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 1
"""


def test_reload_rejects_an_invalid_spec_scales_and_starts_a_new_service(deployment):
    dep = deployment(RELOADABLE.replace("REPLICAS", "2"))
    assert dep.up().returncode == 0
    two = dep.replica_pids()
    assert len(two) == 2

    def reload(spec: str):
        dep.write_spec(spec)
        return dep.deployctl("reload", str(dep.spec_path), timeout=30)

    run = reload(RELOADABLE.replace("REPLICAS", "-1"))
    assert run.returncode == 2, run.describe()
    assert "services.web.replicas" in run.stderr, run.describe()
    assert dep.replica_pids() == two, "an invalid spec changed what runs"

    run = reload(RELOADABLE.replace("REPLICAS", "3"))
    assert run.returncode == 0, run.describe()
    status = dep.wait_for(lambda s: all_ready(s, 3), timeout=20, what="web scaled to 3")
    three = dep.replica_pids(status)
    assert {k: three[k] for k in two} == two, "a replicas-only change must not restart replicas"

    run = reload(RELOADABLE.replace("REPLICAS", "3") + EXTRA_SERVICE)
    assert run.returncode == 0, run.describe()
    status = dep.wait_for(lambda s: any(s_["name"] == "jobs" for s_ in s["services"])
                          and all_ready(s, 4), timeout=20, what="service jobs started")
    assert service_by_name(status, "jobs")["ready"] == 1, status
    assert {k: v for k, v in dep.replica_pids(status).items() if k.startswith("web.")} == three
