"""`deployctl up`, `status` and `down`: starting, observing and stopping a deployment, and
leaving no process behind (grandchildren included)."""
import os
import re
import signal

from harness import (all_ready, assert_gone, http_get, is_alive, parent_pid, proc_info,
                     process_group, service_by_name, wait_until)

FOUR_SERVERS = """
name = "@NAME@"

[services.web]
command = @SERVER_COMMAND@
replicas = 4
listen = ["127.0.0.1:@PORT@"]

[services.web.stop]
timeout = "3s"
"""

TWO_WORKERS = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "ok"]
replicas = 2

[services.web.stop]
timeout = "3s"
"""

GRANDCHILDREN = """
name = "@NAME@"

[services.web]
command = ["@PYTHON@", "@WORKER@", "grandchild", "@DIR@/grandchildren.pids"]
replicas = 1

[services.web.stop]
timeout = "1s"
"""


def test_up_detached_returns_with_every_replica_ready_and_serving(deployment):
    dep = deployment(FOUR_SERVERS)
    run = dep.up()
    assert run.returncode == 0, run.describe()

    status = dep.status()  # no waiting: `up -d` returns only once every replica is ready
    assert status["name"] == "itest"
    assert status["state"] == "running"
    assert is_alive(status["pid"])
    web = service_by_name(status, "web")
    assert (web["desired"], web["ready"]) == (4, 4), status
    assert sorted(r["id"] for r in web["replicas"]) == ["web.0", "web.1", "web.2", "web.3"]
    for replica in web["replicas"]:
        assert replica["state"] == "ready", replica
        assert replica["index"] == int(replica["id"].split(".")[1]), replica
        assert is_alive(replica["pid"]), replica
        assert parent_pid(replica["pid"]) == status["pid"], "replicas are the supervisor's children"
        assert replica["restarts"] == 0 and replica["last_exit"] is None, replica
        assert isinstance(replica["uptime_ms"], int) and replica["uptime_ms"] >= 0, replica
        assert isinstance(replica["rss_bytes"], int) and replica["rss_bytes"] > 0, replica
    pids = {r["pid"] for r in web["replicas"]}
    assert len(pids) == 4

    answer = http_get(dep.port, "/whoami")
    assert answer.failure is None, answer.detail
    replica_id, pid = answer.body.split()
    assert replica_id.startswith("web.") and int(pid) in pids, answer.body


def test_status_table_has_one_row_per_replica_under_the_documented_columns(deployment):
    dep = deployment(FOUR_SERVERS)
    assert dep.up().returncode == 0
    pids = dep.replica_pids()

    run = dep.deployctl("status", str(dep.spec_path))
    assert run.returncode == 0, run.describe()
    lines = run.stdout.splitlines()
    header = (r"REPLICA\s+PID\s+STATE\s+HEALTH\s+UPTIME\s+RESTARTS\s+LAST EXIT\s+MEMORY"
              r"\s+MEM-RESTARTS\s*")
    below = next((i for i, line in enumerate(lines) if re.fullmatch(header, line)), None)
    assert below is not None, f"no header line with the documented columns:\n{run.stdout}"
    rows = {line.split()[0]: line.split() for line in lines[below + 1:]
            if re.match(r"\S+\.\d+\s", line)}  # summary lines may surround the table
    assert sorted(rows) == sorted(pids), run.stdout
    for replica_id, pid in pids.items():
        assert rows[replica_id][1:3] == [str(pid), "ready"], run.stdout


def test_second_up_exits_4_and_changes_nothing(deployment):
    dep = deployment(FOUR_SERVERS)
    assert dep.up().returncode == 0
    before = dep.status()

    for args in (("up", "-d", str(dep.spec_path)), ("up", str(dep.spec_path))):
        again = dep.deployctl(*args, timeout=15)
        assert again.returncode == 4, again.describe()
        assert "already running" in again.output, again.describe()
        assert f"pid {before['pid']}" in again.output, again.describe()

    after = dep.status()
    assert after["pid"] == before["pid"]
    assert dep.replica_pids(after) == dep.replica_pids(before)


def test_status_scale_and_down_without_a_supervisor_exit_3(deployment):
    dep = deployment(FOUR_SERVERS)
    spec = str(dep.spec_path)
    for args in (("status", spec), ("status", "--json", spec), ("status", "--name", "itest"),
                 ("scale", "web=2", "-f", spec), ("down", spec), ("down", "--name", "itest")):
        run = dep.deployctl(*args)
        assert run.returncode == 3, run.describe()


def test_foreground_up_prefixes_replica_output_and_stops_cleanly_on_ctrl_c(deployment):
    dep = deployment(TWO_WORKERS)
    supervisor = dep.up_foreground()
    status = dep.wait_for(lambda s: all_ready(s, 2), timeout=15, what="2 ready replicas")
    processes = [supervisor.pid, *dep.replica_pids(status).values()]

    def prefixed(replica_id, stream, text):
        return re.search(rf"^{re.escape(replica_id)} \| worker {re.escape(replica_id)} ok "
                         rf"started \(pid \d+\) on {stream}$", text, re.M)

    def both_streams_shown():
        stdout, stderr = dep.foreground_output()
        return all(prefixed(f"web.{i}", "stdout", stdout) and prefixed(f"web.{i}", "stderr", stderr)
                   for i in range(2))
    wait_until(both_streams_shown, 5, "prefixed replica output on stdout and stderr")
    stdout, _ = dep.foreground_output()
    assert "on stderr" not in stdout, "replica stderr must go to the supervisor's stderr"

    os.killpg(supervisor.pid, signal.SIGINT)  # what Ctrl+C in a terminal does
    assert supervisor.wait(15) == 0, dep.foreground_output()[1]
    assert_gone(processes)
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


def start_with_grandchildren(dep) -> list[int]:
    """Starts the `grandchild` worker; returns [worker, in-group grandchild, setsid grandchild]."""
    run = dep.up()
    assert run.returncode == 0, run.describe()
    worker = dep.replica_pids()["web.0"]
    pidfile = dep.dir / "grandchildren.pids"
    wait_until(pidfile.exists, 5, "the worker's grandchildren pid file")
    in_group, escaped = (int(pid) for pid in pidfile.read_text().split())
    dep.track_pid(in_group, "grandchild in the worker's process group")
    dep.track_pid(escaped, "grandchild escaped by setsid")
    assert process_group(in_group) == process_group(worker)
    assert proc_info(escaped).sid == escaped != process_group(worker)
    return [worker, in_group, escaped]


def test_down_leaves_no_process_behind_grandchildren_included(deployment):
    dep = deployment(GRANDCHILDREN)
    processes = start_with_grandchildren(dep) + [dep.supervisor_pid]

    run = dep.down(timeout=20)
    assert run.returncode == 0, run.describe()
    assert_gone(processes)
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


def test_sigterm_to_the_supervisor_leaves_no_process_behind(deployment):
    dep = deployment(GRANDCHILDREN)
    processes = start_with_grandchildren(dep)

    os.kill(dep.supervisor_pid, signal.SIGTERM)
    assert_gone([dep.supervisor_pid], 15)
    assert_gone(processes)
    assert dep.leftovers() == {}
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3


def test_a_killed_supervisor_reads_as_not_running_and_up_works_again(deployment):
    dep = deployment(TWO_WORKERS)
    assert dep.up().returncode == 0
    supervisor, replicas = dep.supervisor_pid, list(dep.replica_pids().values())

    os.kill(supervisor, signal.SIGKILL)  # leaves its socket, lock and pid files behind
    assert_gone([supervisor], 5)
    # The replicas survive it (its fd keeper holds their control sockets: issue 14) ...
    assert all(is_alive(pid) for pid in replicas)
    assert dep.deployctl("status", str(dep.spec_path)).returncode == 3

    run = dep.up()
    assert run.returncode == 0, run.describe()
    status = dep.status()
    assert all_ready(status, 2)
    assert sorted(dep.replica_pids(status).values()) == sorted(replicas)  # ... and are adopted
