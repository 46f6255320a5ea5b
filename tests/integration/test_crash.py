"""Crash of the supervisor (issue 14 item 3, docs/upgrade.md "Crash of the supervisor"): kill -9
of the supervisor leaves the replicas serving, the fd keeper holding their channels and the
listen socket; the next `up` of the same spec adopts them (same pids) and supervises them
again: a replica killed afterwards is restarted, `status` is right, `down` leaves nothing.
Without the keeper (killed too) the next `up` stops the leftovers as before."""
import json
import os
import re
import signal
import threading
import time

import pytest

from harness import (all_replicas, client_loops, deploy_example, deployctl_bin, failures_by_kind,
                     free_port, http_get, is_alive, replaced, server_bin, source_dir, summaries, toml_array,
                     wait_gone, wait_until)
from systemd_ns import SystemdNamespace
from test_reuseport import (DEPLOY_SERVER, answering_replicas, down_leaves_nothing, listeners,
                            roll_and_scale_under_load)

# Under the sanitizers, LeakSanitizer's exit-time check in a replica that gets its stop signal
# and then SIGCONT/SIGKILL from the leftovers path can hang or outlive the kill with the
# replica's fds (seen: the process spinning while its tracer waits; the port still bound).
# The crash tests signal whole deployments of sanitized processes repeatedly, so they run
# without the leak check; the rest of the sanitized suite keeps it.
if os.environ.get("DEPLOYCTL_SANITIZED") == "1":
    os.environ["ASAN_OPTIONS"] = ":".join(
        filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))

SERVERS = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 4
listen = ["127.0.0.1:@PORT@"]

# Prints a numbered line every 20 ms, also while no supervisor runs: every number must reach
# the log once the replica is adopted (the keeper held the pipe's read end; the kernel buffered).
[services.ticker]
command = ["/bin/sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.02; done"]
health = { kind = "none" }
"""

# Replicas that outlive their supervisor AND its keeper: no control socket, no output.
SLEEPERS = """
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]
replicas = 2
listen = ["127.0.0.1:@PORT@"]
health = { kind = "none" }
stop = { timeout = "1s" }
"""

# Ready while @DIR@/ready exists (an exec probe): a scale started without it stays starting.
GATED = """
name = "@NAME@"

[services.web]
command = ["/bin/sleep", "600"]
replicas = 1
health = { kind = "exec", command = ["/bin/test", "-e", "@DIR@/ready"] }
stop = { timeout = "1s" }
"""

CLIENTS = 2
FULL_SUPERVISION_TARGET_S = 2.0


def keeper_pid(dep) -> int:
    record = json.loads((dep.state_dir / "replicas.json").read_text())
    [keeper] = [entry["pid"] for entry in record if entry["id"] == "fd-keeper"]
    return keeper


def kill_supervisor(dep) -> tuple[dict, int]:
    """SIGKILLs the supervisor; returns the replica pids by id and the keeper's pid."""
    status = dep.status()
    pids = dep.replica_pids(status)
    keeper = keeper_pid(dep)
    dep.track_pid(keeper, "fd keeper")
    os.kill(status["pid"], signal.SIGKILL)
    wait_until(lambda: not is_alive(status["pid"]), 5, "the supervisor's death")
    return pids, keeper


def fully_supervised(status: dict, pids: dict) -> bool:
    replicas = all_replicas(status)
    return (len(replicas) == len(pids) and
            all(r["pid"] == pids[r["id"]] and r["adopted"] and r["state"] == "ready"
                and r["health"] in ("healthy", "none")
                for r in replicas))


def adopt(dep, pids: dict, measure, what: str) -> float:
    """`up -d` of the same spec; returns seconds from its start to every replica adopted."""
    started = time.monotonic()
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "adopted" in run.stdout, run.describe()
    dep.wait_for(lambda s: fully_supervised(s, pids), 10, "every replica adopted and ready")
    seconds = time.monotonic() - started
    measure(f"{what}: kill -9 of the supervisor -> full supervision {seconds * 1000:.0f} ms "
            f"after the new `up` started (target {FULL_SUPERVISION_TARGET_S} s)")
    return seconds


def tick_numbers(dep) -> list[int]:
    return [int(n) for n in re.findall(r"\| tick (\d+)$", dep.service_log("ticker"), re.M)]


def test_kill_9_of_the_supervisor_under_load_is_adopted(deployment, measure):
    dep = deployment(SERVERS, name="crash")
    assert dep.up().returncode == 0
    with client_loops(dep.port, [("/whoami",)] * CLIENTS) as loops:
        pids, keeper = kill_supervisor(dep)
        logged_before = max(tick_numbers(dep), default=-1)
        # Nobody supervises: the replicas keep serving, the ticker keeps writing into its pipe.
        for loop in loops:
            loop.wait_for_successes(loop.successes + 20, 10)
        assert all(is_alive(pid) for pid in pids.values())
        sock = dep.state_dir / "keeper.sock"  # where the keeper waits for a successor
        wait_until(sock.exists, 5, "the keeper's socket")
        assert sock.stat().st_mode & 0o777 == 0o600
        seconds = adopt(dep, pids, measure, "deploy-server x4")
        for loop in loops:
            loop.wait_for_successes(loop.successes + 20, 10)
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert wait_gone([keeper], 5) == [], "the first keeper handed its fds over and exited"
    assert seconds <= 3 * FULL_SUPERVISION_TARGET_S  # the figure is printed; noisy machine

    # Every tick written while no supervisor ran reached the log, in order, none twice. The
    # ticks the dead supervisor had read but not yet written when it was killed are lost (a
    # documented limit, docs/upgrade.md): at 20 ms a tick, at most the two after the last one
    # in the log at the kill.
    wait_until(lambda: len(tick_numbers(dep)) > 0 and tick_numbers(dep)[-1] > 150, 10,
               "ticks after the adoption")
    ticks = tick_numbers(dep)
    assert len(ticks) == len(set(ticks)) and ticks == sorted(ticks), "a tick repeated"
    after = [n for n in ticks if n > logged_before + 3]
    assert after == list(range(logged_before + 4, ticks[-1] + 1)), "a tick was lost"

    # Supervised again: a killed adopted replica is seen exiting and restarted.
    victim = dep.replica_pids()["web.1"]
    os.kill(victim, signal.SIGKILL)
    status = dep.wait_for(lambda s: replaced(s, "web.1", victim), 15, "web.1 restarted")
    web1 = [r for r in all_replicas(status) if r["id"] == "web.1"][0]
    assert web1["restarts"] >= 1 and not web1["adopted"]
    assert web1["last_exit"]["reason"] == "adopted: exit status unknown", web1
    new_keeper = keeper_pid(dep)
    assert new_keeper != keeper and is_alive(new_keeper)
    dep.track_pid(new_keeper, "fd keeper")
    down = dep.down()
    assert down.returncode == 0, down.describe()
    assert wait_gone([new_keeper, *pids.values()], 5) == []


def test_kill_9_with_per_replica_sockets_is_adopted_and_steered(deployment, measure):
    """The fd keeper holds each replica's own socket too, STATE/adopt.json the kernel's group
    order: the new `up` adopts the same pids with 0 failed requests, and then steers (a rolling
    restart, scale down and up) with 0 failed requests."""
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()), name="crashpr")
    assert dep.up().returncode == 0
    dep.wait_for(lambda s: all_replicas(s) and all(r["state"] == "ready"
                                                   for r in all_replicas(s)), what="ready")
    record = json.loads((dep.state_dir / "adopt.json").read_text())
    assert len(record["replica_sockets"]["web"][f"127.0.0.1:{dep.port}"]) == 4, record
    with client_loops(dep.port, [("/whoami",)] * CLIENTS) as loops:
        pids, keeper = kill_supervisor(dep)
        for loop in loops:
            loop.wait_for_successes(loop.successes + 20, 10)
        adopt(dep, pids, measure, "deploy-server x4 per-replica")
        assert listeners(dep.port) == 4, "the adopted sockets, none bound again"
        for loop in loops:
            loop.wait_for_successes(loop.successes + 20, 10)
        adopted_failures = failures_by_kind(loops)
        restart = roll_and_scale_under_load(dep, loops)
    assert adopted_failures == {}, summaries(loops)
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert "queued connection(s)" not in dep.log_text(), dep.diagnostics()
    measure(f"per-replica after adoption: rolling restart {restart:.1f} s and scale 4->2->4, "
            f"{sum(loop.successes for loop in loops)} requests through crash + steps, 0 failed")
    assert wait_gone([keeper], 5) == []
    ids = set(dep.replica_pids())  # a rollout renames replicas (web.4...)
    assert len(ids) == 4 and answering_replicas(dep.port, ids) == ids
    new_keeper = keeper_pid(dep)
    dep.track_pid(new_keeper, "fd keeper")
    down_leaves_nothing(dep)
    assert wait_gone([new_keeper], 5) == []


def test_kill_9_of_a_fastapi_supervisor_is_adopted(deployment, measure):
    dep = deploy_example(deployment, "uvicorn.toml", {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"',
                                                      "replicas = 3": "replicas = 2"})
    assert dep.up(timeout=60).returncode == 0
    with client_loops(dep.port, [("/",)] * CLIENTS) as loops:
        pids, keeper = kill_supervisor(dep)
        for loop in loops:
            loop.wait_for_successes(loop.successes + 10, 10)
        adopt(dep, pids, measure, "FastAPI/uvicorn x2")
        for loop in loops:
            loop.wait_for_successes(loop.successes + 10, 10)
    assert failures_by_kind(loops) == {}, summaries(loops)
    victim = dep.replica_pids()["web.0"]
    os.kill(victim, signal.SIGKILL)
    dep.wait_for(lambda s: replaced(s, "web.0", victim), 30, "web.0 restarted")
    new_keeper = keeper_pid(dep)
    dep.track_pid(new_keeper, "fd keeper")
    assert dep.down().returncode == 0
    assert wait_gone([new_keeper, *pids.values()], 5) == []


def test_per_replica_replica_dead_while_unsupervised_serves_its_queue_after_adoption(deployment):
    """A replica killed while no supervisor runs: its socket stays in the group (the keeper holds
    it) and keeps its share of new connections, which wait in its backlog; the new `up`
    restarts the replica on that same socket and it serves them: none fails."""
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()), name="deadpr")
    assert dep.up().returncode == 0
    pids, _keeper = kill_supervisor(dep)
    os.kill(pids["web.2"], signal.SIGKILL)
    wait_until(lambda: not is_alive(pids["web.2"]), 5, "web.2's death")
    results = []
    clients = [threading.Thread(target=lambda: results.append(http_get(dep.port, "/whoami", 20)))
               for _ in range(40)]
    for client in clients:
        client.start()
    # Every client connected at once (loopback); the ones steered to web.2's socket wait.
    wait_until(lambda: len(results) >= 20, 10, "the live replicas' answers")
    run = dep.up()
    assert run.returncode == 0 and "adopted" in run.stdout, run.describe()
    for client in clients:
        client.join(30)
    assert len(results) == 40 and [r for r in results if r.failure] == [], results
    new_pid = dep.replica_pids()["web.2"]
    assert new_pid != pids["web.2"]
    served_late = [r for r in results if r.body.startswith(f"web.2 {new_pid}")]
    assert served_late, "none was steered to the dead replica's socket: the test shows nothing"
    assert listeners(dep.port) == 4
    down_leaves_nothing(dep)


def test_per_replica_sockets_of_a_refused_adoption_are_closed(deployment):
    """Another spec: the take-over is refused, the keeper's per-replica sockets are closed with
    the old replicas and the keeper, so the new replicas' sockets make a new group whose order
    the new supervisor knows: new connections reach exactly the replicas that run."""
    dep = deployment(DEPLOY_SERVER.replace("@SERVER@", server_bin()), name="refusedpr")
    assert dep.up().returncode == 0
    pids, keeper = kill_supervisor(dep)
    dep.write_spec(dep.spec_path.read_text().replace("replicas = 4", "replicas = 3"))
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "cannot adopt the replicas of the crashed supervisor: the spec differs" in run.stderr, \
        run.describe()
    assert wait_gone([keeper, *pids.values()], 10) == []
    dep.wait_for(lambda s: len(all_replicas(s)) == 3 and
                 all(r["state"] == "ready" for r in all_replicas(s)), 20, "3 ready")
    assert listeners(dep.port) == 3, "no socket of the old group is left"
    assert answering_replicas(dep.port, {"web.0", "web.1", "web.2"}) == {"web.0", "web.1", "web.2"}
    assert dep.scale(web=1).returncode == 0
    assert answering_replicas(dep.port, {"web.0"}) == {"web.0"}
    down_leaves_nothing(dep)


def test_kill_9_of_the_quick_start_is_adopted(deployment, measure):
    """The quick start (quickstart.toml: FastAPI + uvicorn, 4 replicas on per-replica sockets,
    memory limits, a pre-start step) through a crash of its supervisor, then a rolling restart
    under the client loops: 0 failed requests."""
    dep = deploy_example(deployment, "quickstart.toml", {'"127.0.0.1:8000"': '"127.0.0.1:@PORT@"'})
    assert dep.up(timeout=90).returncode == 0
    dep.wait_for(lambda s: all_replicas(s) and all(r["state"] == "ready"
                                                   for r in all_replicas(s)), 60, "4 ready")
    with client_loops(dep.port, [("/",)] * CLIENTS) as loops:
        pids, keeper = kill_supervisor(dep)
        for loop in loops:
            loop.wait_for_successes(loop.successes + 10, 10)
        adopt(dep, pids, measure, "quick start (FastAPI/uvicorn x4 per-replica)")
        assert "migrate" not in dep.log_text().split("adopted from a crashed supervisor")[-1]
        started = time.monotonic()
        restart = dep.deployctl("restart", "web", "-f", str(dep.spec_path), timeout=120)
        assert restart.returncode == 0, restart.describe()
        restart_seconds = time.monotonic() - started
        for loop in loops:
            loop.wait_for_successes(loop.successes + 10, 20)
    assert failures_by_kind(loops) == {}, summaries(loops)
    assert set(dep.replica_pids().values()).isdisjoint(pids.values())
    measure(f"quick start: crash + adoption + rolling restart ({restart_seconds:.1f} s): "
            f"{sum(loop.successes for loop in loops)} requests, 0 failed")
    new_keeper = keeper_pid(dep)
    dep.track_pid(new_keeper, "fd keeper")
    down_leaves_nothing(dep)
    assert wait_gone([keeper, new_keeper], 5) == []


def test_without_the_keeper_the_leftovers_are_stopped(deployment):
    dep = deployment(SLEEPERS, name="nokeeper")
    assert dep.up().returncode == 0
    pids, keeper = kill_supervisor(dep)
    os.kill(keeper, signal.SIGKILL)
    assert wait_gone([keeper], 5) == []  # it may hold the deployment's lock until it is gone
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "cannot adopt" in run.stderr and "fd keeper is gone" in run.stderr, run.describe()
    assert "a previous supervisor died and left" in run.stderr, run.describe()
    assert wait_gone(list(pids.values()), 10) == []
    assert set(dep.replica_pids().values()).isdisjoint(pids.values())


def test_the_keeper_starts_after_the_first_replicas(deployment):
    """The keeper (a fork+exec of deployctl) is started once the initial replicas are spawned,
    not before them (docs/upgrade.md): its pid comes after theirs, and it still holds them all
    (a crash right after `up` is adopted)."""
    dep = deployment(SLEEPERS, name="keeperlast")
    assert dep.up().returncode == 0
    status = dep.status()
    pids, keeper = dep.replica_pids(status), keeper_pid(dep)
    if any(pid < status["pid"] for pid in [keeper, *pids.values()]):
        pytest.skip("pid numbers wrapped around during `up`: their order says nothing")
    assert keeper > max(pids.values()), (keeper, pids)
    pids, _ = kill_supervisor(dep)
    run = dep.up()
    assert run.returncode == 0 and "adopted" in run.stdout, run.describe()
    dep.wait_for(lambda s: fully_supervised(s, pids), 10, "every replica adopted and ready")


def test_another_spec_is_not_adopted_the_leftovers_are_stopped(deployment):
    dep = deployment(SLEEPERS, name="otherspec")
    assert dep.up().returncode == 0
    pids, keeper = kill_supervisor(dep)
    dep.write_spec(SLEEPERS.replace("replicas = 2", "replicas = 3"))
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "cannot adopt the replicas of the crashed supervisor: the spec differs" in run.stderr, \
        run.describe()
    assert wait_gone([keeper, *pids.values()], 10) == []
    assert len(dep.replica_pids()) == 3


def test_down_without_a_supervisor_stops_the_keeper_too(deployment):
    dep = deployment(SERVERS, name="downkeeper")
    assert dep.up().returncode == 0
    pids, keeper = kill_supervisor(dep)
    run = dep.deployctl("down", "--name", dep.name)
    assert run.returncode == 0, run.describe()
    assert "fd-keeper (pid" in run.stdout, run.describe()
    assert wait_gone([keeper, *pids.values()], 10) == []


def test_the_keeper_survives_an_upgrade_in_place(deployment):
    dep = deployment(SERVERS, name="upkeeper")
    assert dep.up().returncode == 0
    keeper = keeper_pid(dep)
    run = dep.deployctl("upgrade", "--name", dep.name, timeout=40)
    assert run.returncode == 0, run.describe()
    assert keeper_pid(dep) == keeper and is_alive(keeper)  # carried across the exec
    pids, _ = kill_supervisor(dep)
    run = dep.up()
    assert run.returncode == 0 and "adopted" in run.stdout, run.describe()
    dep.wait_for(lambda s: fully_supervised(s, pids), 10, "every replica adopted and ready")


# --- under a real systemd (systemd_ns.py): the shipped unit, its paths pointed at this build ---

SYSTEMD_SPEC = """
name = "crashsd"

[services.web]
command = @COMMAND@
replicas = 2
listen = ["127.0.0.1:@PORT@"]
"""


def shipped_unit(work) -> str:
    text = (source_dir() / "systemd" / "deployctl@.service").read_text()
    assert "KillMode=process" in text
    return (text.replace("/usr/bin/deployctl", deployctl_bin())
            .replace("/etc/deployctl/%i.toml", f"{work}/%i.toml"))


def test_kill_9_of_the_main_pid_under_systemd_is_adopted(measure):
    port = free_port()
    unit = "deployctl@crashsd.service"
    with SystemdNamespace() as ns:
        work = ns.shared_dir
        (work / "crashsd.toml").write_text(SYSTEMD_SPEC.replace("@PORT@", str(port)).replace(
            "@COMMAND@", toml_array([server_bin()])))
        ns.install_unit("deployctl@.service", shipped_unit(work))
        ns.daemon_reload()
        ns.systemctl("start", unit, timeout=60)

        def status():
            run = ns.run([deployctl_bin(), "status", "--json", "--name", "crashsd"], check=False)
            return json.loads(run.stdout) if run.returncode == 0 else None

        before = {r["id"]: r["pid"] for r in all_replicas(status())}
        assert len(before) == 2
        main = ns.main_pid(unit)
        keeper = json.loads(ns.run(["cat", "/run/deployctl/crashsd/replicas.json"]).stdout)
        assert any(entry["id"] == "fd-keeper" for entry in keeper)
        with client_loops(port, [("/",)] * CLIENTS) as loops:
            os.kill(main, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: ns.main_pid(unit) not in (0, main), 15, "systemd's restart")
            restarted = time.monotonic()
            wait_until(lambda: (s := status()) and fully_supervised(s, before), 15,
                       "every replica adopted and ready")
            supervised = time.monotonic()
            for loop in loops:
                loop.wait_for_successes(loop.successes + 10, 10)
        assert failures_by_kind(loops) == {}, summaries(loops)
        measure(f"systemd: kill -9 of MainPID -> full supervision {(supervised - killed) * 1000:.0f}"
                f" ms (RestartSec=1s included; {(supervised - restarted) * 1000:.0f} ms after the "
                f"new MainPID appeared)")
        # Supervised again: a replica killed now is restarted by the new supervisor.
        victim = before["web.0"]
        ns.run(["kill", "-9", str(victim)])
        wait_until(lambda: (s := status()) and replaced(s, "web.0", victim), 15, "web.0 restarted")
        record = json.loads(ns.run(["cat", "/run/deployctl/crashsd/replicas.json"]).stdout)
        pids = [entry["pid"] for entry in record]  # the live replicas and the new keeper
        assert any(entry["id"] == "fd-keeper" for entry in record)
        ns.systemctl("stop", unit, timeout=60)
        assert ns.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
        left = [pid for pid in pids if ns.run(["test", "-d", f"/proc/{pid}"],
                                              check=False).returncode == 0]
        assert left == [], f"left running after systemctl stop: {left}"


def test_kill_9_during_a_scale_is_refused_the_leftovers_are_stopped(deployment):
    """STATE/adopt.json is not rewritten from one unsettled state to another (a scale's `ready`
    events), but the first unsettled state is written: a crash while new replicas start is a
    refused adoption (the leftovers stopped), never the adoption of the state before the scale."""
    dep = deployment(GATED, name="crashscale")
    flag = dep.dir / "ready"
    flag.touch()
    assert dep.up().returncode == 0
    flag.unlink()
    scale = threading.Thread(target=dep.deployctl, args=("scale", "web=3"), daemon=True)
    scale.start()  # waits for readiness that cannot come: ends when the supervisor dies
    dep.wait_for(lambda s: [r["state"] for r in all_replicas(s)] ==
                 ["ready", "starting", "starting"], 10, "two replicas starting")
    record = json.loads((dep.state_dir / "adopt.json").read_text())
    assert len(record["replicas"]) == 3, record
    pids, keeper = kill_supervisor(dep)
    scale.join(15)
    flag.touch()
    run = dep.up()
    assert run.returncode == 0, run.describe()
    assert "cannot adopt the replicas of the crashed supervisor: web.1 was starting" \
        in run.stderr, run.describe()
    assert wait_gone([keeper, *pids.values()], 10) == []
    assert set(dep.replica_pids().values()).isdisjoint(pids.values())
