"""`deployctl restart`: rolling replacement within the [rollout] bounds, with no failed request,
and a rollout whose new replicas cannot start leaves the old ones serving."""
import os
import signal
import socket

from harness import (ClientLoop, free_port, http_get, is_alive, server_bin, service_by_name,
                     wait_until)

ROLLING = """
name = "@NAME@"

[services.web]
# A wrapper that refuses to start while the flag file exists; otherwise it is deploy-server.
command = ["/bin/sh", "-c", "if [ -e @DIR@/broken ]; then echo 'broken build' >&2; exit 1; fi; exec @SERVER@ --debug-endpoints"]
replicas = 4
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "5s"

[services.web.rollout]
max_surge = @SURGE@
max_unavailable = @UNAVAILABLE@
"""


def rolling_spec(surge: int, unavailable: int) -> str:
    return (ROLLING.replace("@SERVER@", server_bin())
            .replace("@SURGE@", str(surge)).replace("@UNAVAILABLE@", str(unavailable)))


def test_restart_replaces_every_replica_without_a_failed_request(deployment):
    dep = deployment(rolling_spec(1, 0))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    assert len(before) == 4

    loops = [ClientLoop(dep.port, paths=("/whoami",)),
             ClientLoop(dep.port, paths=("/sleep/100",), pause=0)]
    with loops[0], loops[1]:
        for loop in loops:
            loop.wait_for_successes(3, 10)
        run = dep.deployctl("restart", "--name", dep.name, timeout=60)
        assert run.returncode == 0, run.describe()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 3, 10)

    status = dep.status()
    web = service_by_name(status, "web")
    assert (web["desired"], web["ready"], web["rollout"]) == (4, 4, "done"), web
    after = dep.replica_pids(status)
    assert len(after) == 4
    assert set(after.values()).isdisjoint(before.values()), "every replica must be new"
    assert [pid for pid in before.values() if is_alive(pid)] == []
    for loop in loops:
        assert loop.failures == [], loop.summary()


def test_restart_with_surge_0_and_one_unavailable(deployment):
    dep = deployment(rolling_spec(0, 1))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    run = dep.deployctl("restart", "web", "--name", dep.name, timeout=60)
    assert run.returncode == 0, run.describe()
    status = dep.status()
    web = service_by_name(status, "web")
    assert (web["desired"], web["ready"], len(web["replicas"])) == (4, 4, 4), web
    assert set(dep.replica_pids(status).values()).isdisjoint(before.values())


def test_failed_rollout_stops_and_the_old_replicas_keep_serving(deployment):
    dep = deployment(rolling_spec(1, 0))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    (dep.dir / "broken").write_text("")
    with ClientLoop(dep.port, paths=("/whoami",)) as loop:
        loop.wait_for_successes(3, 10)
        run = dep.deployctl("restart", "--name", dep.name, timeout=60)
        assert run.returncode == 1, run.describe()
        assert "did not become ready" in run.stderr, run.describe()
        assert "old replicas keep serving" in run.stderr, run.describe()
        loop.wait_for_successes(loop.successes + 3, 10)
    assert loop.failures == [], loop.summary()
    status = dep.status()
    web = service_by_name(status, "web")
    assert (web["ready"], web["rollout"]) == (4, "failed"), web
    assert dep.replica_pids(status) == before
    assert http_get(dep.port).status == 200


RELOADABLE = """
name = "@NAME@"

@PRE_START@

[services.web]
command = ["@SERVER@", "--debug-endpoints"]
replicas = 3
listen = ["127.0.0.1:@PORT@"]
env = { GENERATION = "@GENERATION@" }

[services.web.stop]
timeout = "5s"
"""


def reloadable(generation: str, pre_start: str = "") -> str:
    return (RELOADABLE.replace("@SERVER@", server_bin()).replace("@GENERATION@", generation)
            .replace("@PRE_START@", pre_start))


def test_reload_rolls_a_changed_service_without_a_failed_request(deployment):
    dep = deployment(reloadable("1"))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    dep.write_spec(reloadable("2", '[[pre_start]]\nname = "mark"\n'
                                   'command = ["/bin/sh", "-c", "touch @DIR@/reloaded"]'))
    with ClientLoop(dep.port, paths=("/whoami", "/sleep/50")) as loop:
        loop.wait_for_successes(3, 10)
        run = dep.deployctl("reload", str(dep.spec_path), timeout=60)
        assert run.returncode == 0, run.describe()
        loop.wait_for_successes(loop.successes + 3, 10)
    assert loop.failures == [], loop.summary()
    assert (dep.dir / "reloaded").exists(), "the pre-start step runs before the change"
    after = dep.replica_pids()
    assert len(after) == 3 and set(after.values()).isdisjoint(before.values())
    for pid in after.values():
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        assert b"GENERATION=2" in environ


def test_reload_with_a_failing_pre_start_step_changes_nothing(deployment):
    dep = deployment(reloadable("1"))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    dep.write_spec(reloadable("2", '[[pre_start]]\nname = "doomed"\n'
                                   'command = ["/bin/sh", "-c", "echo no database >&2; exit 4"]'))
    run = dep.deployctl("reload", str(dep.spec_path), timeout=30)
    assert run.returncode == 1, run.describe()
    assert "'doomed' failed: exited with code 4" in run.stderr, run.describe()
    assert "no database" in run.stderr and "nothing was changed" in run.stderr, run.describe()
    assert dep.replica_pids() == before


def test_reload_whose_new_listen_port_is_taken_changes_nothing(deployment):
    dep = deployment(reloadable("1"))
    assert dep.up().returncode == 0
    before = dep.replica_pids()
    taken = free_port()
    with socket.socket() as holder:  # another process holds the new port
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        address = f"127.0.0.1:{taken}"
        dep.write_spec(reloadable("2").replace('listen = ["127.0.0.1:@PORT@"]',
                                               f'listen = ["127.0.0.1:@PORT@", "{address}"]'))
        run = dep.deployctl("reload", str(dep.spec_path), timeout=30)
        assert run.returncode == 1, run.describe()
        assert f"reload refused: cannot listen on {address}" in run.stderr, run.describe()
        assert "nothing was changed" in run.stderr, run.describe()
        status = dep.status()
        assert service_by_name(status, "web")["listen"] == [f"127.0.0.1:{dep.port}"], status
        assert dep.replica_pids(status) == before
    # Not left half-way: once the port is free the same reload goes through.
    run = dep.deployctl("reload", str(dep.spec_path), timeout=60)
    assert run.returncode == 0, run.describe()
    assert service_by_name(dep.status(), "web")["listen"] == [f"127.0.0.1:{dep.port}", address]


def test_sighup_reloads_the_file_the_supervisor_was_started_with(deployment):
    dep = deployment(reloadable("1"))
    assert dep.up().returncode == 0
    dep.write_spec(reloadable("1").replace("replicas = 3", "replicas = 4"))
    os.kill(dep.supervisor_pid, signal.SIGHUP)
    wait_until(lambda: service_by_name(dep.status(), "web")["ready"] == 4, 10,
               "SIGHUP applied the new replica count")
