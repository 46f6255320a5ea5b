"""`deployctl scale`: live scale-up and scale-down, with no failed request while draining."""
from harness import ClientLoop, exit_lines, is_alive, service_by_name, wait_until

SCALABLE = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 4
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "5s"
"""


def assert_running_exactly(status: dict, count: int) -> None:
    """web wants and has `count` ready replicas, web.0 .. web.<count-1>, and no other process."""
    web = service_by_name(status, "web")
    assert (web["desired"], web["ready"]) == (count, count), web
    ready = sorted((r["id"] for r in web["replicas"] if r["state"] == "ready"),
                   key=lambda replica_id: int(replica_id.split(".")[1]))
    assert ready == [f"web.{i}" for i in range(count)], web
    assert all(r["pid"] is None for r in web["replicas"] if r["state"] != "ready"), web


def test_scale_4_to_8_to_2_reaches_each_count_and_drains_without_failed_requests(deployment):
    dep = deployment(SCALABLE)
    assert dep.up().returncode == 0
    four = dep.replica_pids()
    assert len(four) == 4

    run = dep.scale(web=8)
    assert run.returncode == 0, run.describe()
    status = dep.status()  # no waiting: scale returns once the count is reached
    assert_running_exactly(status, 8)
    eight = dep.replica_pids(status)
    assert {k: eight[k] for k in four} == four, "scale-up must not touch running replicas"
    drained = {rid: pid for rid, pid in eight.items() if int(rid.split(".")[1]) >= 2}

    # One client of quick requests and two of 200ms ones, so that draining replicas have
    # requests in flight.
    loops = [ClientLoop(dep.port, paths=("/whoami",)),
             ClientLoop(dep.port, paths=("/sleep/200",), pause=0),
             ClientLoop(dep.port, paths=("/sleep/200",), pause=0)]
    with loops[0], loops[1], loops[2]:
        for loop in loops:
            loop.wait_for_successes(3, 10)
        run = dep.scale(web=2)
        assert run.returncode == 0, run.describe()
        status = dep.status()
        for loop in loops:
            loop.wait_for_successes(loop.successes + 3, 10)

    assert_running_exactly(status, 2)
    assert dep.replica_pids(status) == {k: four[k] for k in ("web.0", "web.1")}
    for loop in loops:
        assert loop.failures == [], loop.summary()
    assert [pid for pid in drained.values() if is_alive(pid)] == [], "scale returned before exit"
    expected_lines = {(rid, pid, "code 0") for rid, pid in drained.items()}
    wait_until(lambda: expected_lines <= set(exit_lines(dep.log_text())), 5,
               f"log lines 'web.N (pid P) exited: code 0' for the drained {drained}")
