"""Workers that speak sd_notify instead of the control protocol: READY=1 and WATCHDOG=1 through
their own NOTIFY_SOCKET."""
import time

from harness import replica_by_id, wait_until

NOTIFY = """
name = "@NAME@"

[services.app]
command = ["@PYTHON@", "@DIR@/notify_worker.py", "@ARGS@"]
replicas = 1

[services.app.health]
kind = "control"
interval = "200ms"
timeout = "150ms"
failures = 2

[services.app.stop]
timeout = "1s"
"""


def spec(dep_args: str) -> str:
    return NOTIFY.replace('"@ARGS@"', dep_args)


def copy_worker(dep) -> None:
    source = dep.expand("@WORKER@").replace("worker.py", "notify_worker.py")
    (dep.dir / "notify_worker.py").write_text(open(source).read())


def test_ready_only_after_ready_1_then_kept_healthy_by_watchdog(deployment):
    dep = deployment(spec('"0.6"'))
    copy_worker(dep)
    started = time.monotonic()
    foreground = dep.up_foreground()
    wait_until(lambda: (dep.try_status()[1] or {}).get("services"), 10, "status answers")
    first = replica_by_id(dep.status(), "app.0")
    if time.monotonic() - started < 0.5:
        assert first["state"] == "starting", first
    wait_until(lambda: replica_by_id(dep.status(), "app.0")["state"] == "ready", 10, "ready")
    assert time.monotonic() - started >= 0.6
    time.sleep(1.5)  # 7 health intervals: only WATCHDOG=1 answers them
    replica = replica_by_id(dep.status(), "app.0")
    assert (replica["state"], replica["health"], replica["restarts"]) == ("ready", "healthy", 0)
    assert replica["status"] == "serving"
    assert foreground.poll() is None


def test_a_silent_watchdog_gets_the_replica_replaced(deployment):
    dep = deployment(spec('"0", "3"'))
    copy_worker(dep)
    assert dep.up().returncode == 0
    wait_until(lambda: (replica_by_id(dep.status(), "app.0")["last_exit"] or {}).get("reason")
               == "health", 10, "the replica is replaced for missing its health checks")
