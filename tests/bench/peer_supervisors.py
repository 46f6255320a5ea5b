"""The supervisors the peer benchmark drives, each running tiny workers in its own temp dir:
deployctl, runit, s6, supervisord, and gunicorn (with a WSGI app that answers alike)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench_util import (TAG_VARIABLE, BenchError, age_s, checked_run, comm, free_base_port,
                        is_alive, kill_tree_and_tag, reap_orphans, tagged_pids, tree,
                        wait_all_answer, wait_until)

STABLE_AGE_S = 1.1  # a kill target must have run this long (see peers.py's doc)


class Supervisor:
    """One supervisor of `replicas` tiny workers on ports base .. base+replicas-1, in its own
    temp dir. start() launches it and returns at once; close() stops everything it started.
    shared_port: every replica on the one port `base` (SO_REUSEPORT, or deployctl's `listen`);
    max_replicas: ports reserved for scale_to; worker_args: extra arguments of every worker;
    defaults: the peer's own restart defaults instead of the bench's fast-restart settings."""
    name = "?"

    def __init__(self, worker: Path, replicas: int, log_dir: Path, shared_port: bool = False,
                 max_replicas: int | None = None, worker_args: str = "", defaults: bool = False):
        self.worker, self.replicas, self.shared = worker, replicas, shared_port
        self.worker_args, self.defaults = worker_args, defaults
        self.dir = Path(tempfile.mkdtemp(prefix=f"pb-{self.name}-"))
        self.max_replicas = max(replicas, max_replicas or 0)
        self.base = free_base_port(1 if shared_port else self.max_replicas)
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, TAG_VARIABLE: self.tag}
        self.process: subprocess.Popen | None = None
        self.log_path = log_dir / f"{self.name}-{self.tag[:8]}.log"
        self.prepare()

    @property
    def ports(self) -> list[int]:
        return [self.base] if self.shared else [self.base + i for i in range(self.replicas)]

    def prepare(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.dir)

    def worker_line(self, offset: str) -> str:
        return (f"{self.worker} --port {self.base} --offset {'0' if self.shared else offset}"
                f"{' ' + self.worker_args if self.worker_args else ''}")

    def wait_up(self, timeout: float) -> dict[int, int]:
        """After start(): waits until every port answers; returns port -> pid."""
        return wait_all_answer(self.ports, timeout, f"{self.name} start")

    def restart_all(self) -> None:
        """The peer's own way to restart every replica (the rolling-restart scenario)."""
        raise NotImplementedError

    def scale_to(self, count: int) -> None:
        """The peer's own way to run `count` replicas; returns once the command is given."""
        raise NotImplementedError

    def workers(self) -> list[int]:
        """Pids of the tiny workers this supervisor runs now."""
        return [pid for pid in tagged_pids(self.tag) if is_alive(pid)
                and comm(pid) == "tiny_worker"]

    def own_pids(self) -> list[int]:
        """The supervisor's own processes (not the workers) alive now."""
        workers = set(self.workers())
        root = self.process.pid if self.process else None
        return [pid for pid in (tree(root) if root else []) if pid not in workers
                and is_alive(pid)]

    def state(self) -> str:
        """The supervisor's own words on the state of its replicas (crash-loop scenario)."""
        raise NotImplementedError

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Waits until all replicas run, have run > STABLE_AGE_S and every port answers."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            if len(pids) == self.replicas and all(age_s(pid) > STABLE_AGE_S for pid in pids):
                wait_all_answer(self.ports, max(0.1, deadline - time.monotonic()), self.name)
                return
            if time.monotonic() >= deadline:
                raise BenchError(f"{self.name}: {len(pids)} of {self.replicas} workers settled "
                                 f"after {timeout}s")
            time.sleep(0.05)

    def close(self) -> list[str]:
        leaked = kill_tree_and_tag(self.process.pid if self.process else None, self.tag)
        if self.process:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                leaked.append(self.process.pid)
        reap_orphans()
        shutil.rmtree(self.dir, ignore_errors=True)
        return [f"{self.name}: pid {pid} outside the supervisor's tree, killed" for pid in leaked]


def write_run_script(service_dir: Path, line: str) -> None:
    service_dir.mkdir(parents=True)
    run = service_dir / "run"
    run.write_text(f"#!/bin/sh\nexec {line}\n")
    run.chmod(0o755)


class ServiceDirs(Supervisor):
    """runit and s6: one service directory per replica in a scan directory. Scaling up stages
    the new directories elsewhere and renames each into the scan directory, so the scanner never
    sees half a directory; scaling down stops the service and moves its directory out."""
    scan_name = "?"

    @property
    def scan(self) -> Path:
        return self.dir / self.scan_name

    def service(self, index: int) -> Path:
        return self.scan / f"web{index}"

    def prepare(self) -> None:
        self.scan.mkdir()
        (self.dir / "staging").mkdir()
        (self.dir / "removed").mkdir()
        for index in range(self.replicas):
            write_run_script(self.service(index), self.worker_line(str(index)))

    def add_services(self, indexes: range) -> None:
        for index in indexes:
            staged = self.dir / "staging" / f"web{index}"
            write_run_script(staged, self.worker_line(str(index)))
        for index in indexes:
            (self.dir / "staging" / f"web{index}").rename(self.service(index))

    def remove_services(self, indexes: range) -> None:
        """Moves the dirs out of the scan dir, each under a name not used before."""
        for index in indexes:
            self.service(index).rename(self.dir / "removed" / f"web{index}-{uuid.uuid4().hex}")


class Runit(ServiceDirs):
    name, scan_name = "runit", "service"

    def command(self) -> list[str]:
        return ["runsvdir", str(self.scan)]

    def restart_all(self) -> None:
        for index in range(self.replicas):  # sv -w: returns once that service is up again
            checked_run(["sv", "-w", "10", "restart", str(self.service(index))], self.env)

    def scale_to(self, count: int) -> None:
        """Up: new service dirs (runsvdir notices within its 5 s rescan). Down: `sv down` and
        `sv exit` of the surplus (no -w: the bench times the workers' exits), dirs moved out."""
        if count > self.replicas:
            self.add_services(range(self.replicas, count))
        else:
            surplus = [str(self.service(i)) for i in range(count, self.replicas)]
            checked_run(["sv", "down", *surplus], self.env)
            checked_run(["sv", "exit", *surplus], self.env)
            self.remove_services(range(count, self.replicas))
        self.replicas = count

    def state(self) -> str:
        return checked_run(["sv", "status", str(self.service(0))], self.env)


class S6(ServiceDirs):
    name, scan_name = "s6", "scan"

    def command(self) -> list[str]:
        return ["s6-svscan", str(self.scan)]

    def restart_all(self) -> None:
        for index in range(self.replicas):  # -wr: returns once that service was restarted
            checked_run(["s6-svc", "-wr", "-T", "10000", "-r", str(self.service(index))],
                        self.env)

    def scale_to(self, count: int) -> None:
        """Up: new service dirs, then `s6-svscanctl -a` (rescan now). Down: dirs moved out, then
        `s6-svscanctl -an` (rescan, and stop the supervisors of vanished services)."""
        if count > self.replicas:
            self.add_services(range(self.replicas, count))
            checked_run(["s6-svscanctl", "-a", str(self.scan)], self.env)
        else:
            self.remove_services(range(count, self.replicas))
            checked_run(["s6-svscanctl", "-an", str(self.scan)], self.env)
        self.replicas = count

    def state(self) -> str:
        return checked_run(["s6-svstat", str(self.service(0))], self.env)


SUPERVISORD_CONF = """\
[unix_http_server]
file = {dir}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {dir}/supervisord.log
pidfile = {dir}/supervisord.pid
childlogdir = {dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{dir}/supervisor.sock

[program:web]
command = {line}
process_name = %(program_name)s_%(process_num)d
numprocs = {replicas}
autorestart = true
stdout_logfile = NONE
stderr_logfile = NONE
{startsecs}"""


class Supervisord(Supervisor):
    name = "supervisord"

    @property
    def conf(self) -> Path:
        return self.dir / "supervisord.conf"

    def prepare(self) -> None:
        # startsecs = 0: a worker counts as started at once (as under the other supervisors);
        # with `defaults` supervisord's own startsecs = 1, startretries = 3 apply.
        self.conf.write_text(SUPERVISORD_CONF.format(
            dir=self.dir, line=self.worker_line("%(process_num)d"), replicas=self.replicas,
            startsecs="" if self.defaults else "startsecs = 0\n"))

    def command(self) -> list[str]:
        return ["supervisord", "-n", "-c", str(self.conf)]

    def ctl(self, *args: str) -> str:
        return checked_run(["supervisorctl", "-c", str(self.conf), *args], self.env)

    def restart_all(self) -> None:
        self.ctl("restart", "all")

    def scale_to(self, count: int) -> None:
        """numprocs = count in the config, then `supervisorctl update` (which stops and
        re-creates the whole group: supervisord's way to change numprocs)."""
        self.replicas = count
        self.prepare()
        self.ctl("update")

    def state(self) -> str:
        run = subprocess.run(["supervisorctl", "-c", str(self.conf), "status"], env=self.env,
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        return run.stdout.decode(errors="replace").strip()  # exits 3 when a program is down


DEPLOY_SPEC = """\
name = "bench"

[services.web]
{where}
replicas = {replicas}

[services.web.health]
kind = "http"
interval = "1s"
{restart}
[services.web.stop]
timeout = "2s"
"""

FAST_RESTART = """
[services.web.restart]
backoff = { initial = "100ms", max = "30s", reset_after = "500ms" }
crash_loop = { restarts = 1000, within = "60s" }
"""


class Deployctl(Supervisor):
    """`deployctl up -d` in the foreground of start(): it forks the supervisor daemon, so the
    tree to stop is found by the environment tag; close() runs `down` first."""
    name = "deployctl"
    deployctl_bin = "deployctl"

    def prepare(self) -> None:
        self.env["DEPLOYCTL_RUNTIME_DIR"] = str(self.dir / "run")
        self.write_spec(self.worker, self.worker_args.split())

    def write_spec(self, program: Path, args: list[str]) -> None:
        command = json.dumps([str(program), *args])[1:-1]
        where = (f'command = [{command}]\nlisten = ["127.0.0.1:{self.base}"]' if self.shared
                 else f'command = [{command}, "--port", "{{port}}"]\nport = {self.base}')
        (self.dir / "deploy.toml").write_text(DEPLOY_SPEC.format(
            where=where, replicas=self.replicas, restart="" if self.defaults else FAST_RESTART))

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        return checked_run([self.deployctl_bin, *args, "--name", "bench"], self.env, timeout)

    def wait_up(self, timeout: float) -> dict[int, int]:
        """`up -d` returns once every replica is ready: waits for it, then for the ports."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`deployctl up -d` still running after {timeout}s") from None
        if code:
            raise BenchError(f"`deployctl up -d` exited {code}: "
                             f"{self.log_path.read_text(errors='replace').strip()[-600:]}")
        return super().wait_up(timeout)

    def restart_all(self) -> None:
        self.ctl("restart")

    def scale_to(self, count: int) -> None:
        """`deployctl scale web=N` (returns once the replicas are ready or stopped)."""
        self.ctl("scale", f"web={count}")
        self.replicas = count

    def own_pids(self) -> list[int]:
        return [pid for pid in tagged_pids(self.tag) if is_alive(pid)
                and comm(pid) == "deployctl"]

    def state(self) -> str:
        status = json.loads(self.ctl("status", "--json", timeout=30))
        return "; ".join(f"{r['id']} {r['state']}, {r['restarts']} restarts, last exit "
                         f"{(r['last_exit'] or {}).get('reason', '-')}"
                         for service in status["services"] for r in service["replicas"])

    def command(self) -> list[str]:
        return [self.deployctl_bin, "up", "-d", str(self.dir / "deploy.toml")]

    def close(self) -> list[str]:
        problems = []
        if tagged_pids(self.tag):
            down = subprocess.run([self.deployctl_bin, "down", "--name", "bench"], env=self.env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if down.returncode not in (0, 3):
                problems.append(f"deployctl down exited {down.returncode}: "
                                f"{down.stderr.decode(errors='replace').strip()}")
        if self.process:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                problems.append("`deployctl up -d` still running 30s after down")
        still = [pid for pid in tagged_pids(self.tag) if is_alive(pid)]
        problems += [f"deployctl: pid {pid} alive after down, killed" for pid in still]
        return problems + super().close()


class DeployServer(Deployctl):
    """deployctl running deploy-server (which speaks the control protocol: READY=1, PONG,
    DRAIN=1) instead of the tiny worker, on one shared port; health over the control socket.
    `worker` is ignored: the binary is deploy_server_bin (set by peers.py)."""
    name = "deployctl+deploy-server"
    deploy_server_bin = "deploy-server"

    def __init__(self, worker: Path, replicas: int, log_dir: Path, **options):
        super().__init__(worker, replicas, log_dir, **{**options, "shared_port": True})

    def prepare(self) -> None:
        self.env["DEPLOYCTL_RUNTIME_DIR"] = str(self.dir / "run")
        spec = DEPLOY_SPEC.format(where=f'command = ["{self.deploy_server_bin}"]\n'
                                        f'listen = ["127.0.0.1:{self.base}"]',
                                  replicas=self.replicas, restart="")
        (self.dir / "deploy.toml").write_text(spec.replace('kind = "http"', 'kind = "control"'))

    def workers(self) -> list[int]:
        return [pid for pid in tagged_pids(self.tag) if is_alive(pid)
                and comm(pid) == "deploy-server"]


WSGI_APP = """\
import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3"), ("X-Pid", str(os.getpid()))])
    return [b"ok\\n"]
"""

CRASH_CHECK = """\
import os

CRASH_IF = {path!r}
if os.path.exists(CRASH_IF):  # as tiny_worker --crash-if: count this start, exit 1 at once
    with open(CRASH_IF, "a") as log:
        log.write(f"{{os.getpid()}}\\n")
    os._exit(1)
"""


class Gunicorn(Supervisor):
    """gunicorn's master with `replicas` sync workers running a WSGI app that answers like the
    tiny worker (gunicorn cannot run a foreign binary). worker_args "--crash-if FILE" works as
    the tiny worker's: the app module, as a worker imports it, exits 1 at once if FILE exists."""
    name = "gunicorn"

    def prepare(self) -> None:
        words = self.worker_args.split()
        crash = CRASH_CHECK.format(path=words[1]) if words[:1] == ["--crash-if"] else ""
        (self.dir / "app.py").write_text(crash + WSGI_APP)

    def command(self) -> list[str]:
        return ["gunicorn", "--workers", str(self.replicas), "--bind",
                f"127.0.0.1:{self.base}", "--chdir", str(self.dir), "app:app"]

    @property
    def ports(self) -> list[int]:
        return [self.base]  # every worker on the arbiter's one port

    def workers(self) -> list[int]:
        return [pid for pid in tree(self.process.pid)[1:] if is_alive(pid)]

    def own_pids(self) -> list[int]:
        return [self.process.pid] if is_alive(self.process.pid) else []

    def wait_up(self, timeout: float) -> dict[int, int]:
        """The port answers and all `replicas` workers run."""
        answers = super().wait_up(timeout)
        wait_until(lambda: len(self.workers()) == self.replicas, timeout,
                   f"gunicorn: {self.replicas} workers")
        return answers

    def state(self) -> str:
        code = self.process.poll()
        return (f"arbiter exited {code}" if code is not None
                else f"arbiter running, {len(self.workers())} workers")

    def restart_all(self) -> None:
        """SIGHUP: gunicorn starts new workers and stops the old ones; returns once every
        worker is new (bounded)."""
        old = set(self.workers())
        os.kill(self.process.pid, signal.SIGHUP)

        def all_new():
            now = set(self.workers())
            return len(now) == self.replicas and not now & old
        wait_until(all_new, 30.0, f"gunicorn: every worker replaced after SIGHUP (old: "
                                  f"{sorted(old)})")


class Direct(Supervisor):
    """The floor, not a peer: direct_launch.c (built next to the worker) fork+execs the workers
    with the same argv and only waits; no supervisor can start them faster in this measurement.
    Startup scenario only; stopped by killing its tree like every other side."""
    name = "direct"

    def prepare(self) -> None:
        pass

    def command(self) -> list[str]:
        return [str(self.worker.parent / "direct_launch"), str(self.replicas), str(self.worker),
                "--port", str(self.base)]


SUPERVISORS = [Deployctl, Runit, S6, Supervisord]
ROLLING_PEERS = SUPERVISORS + [Gunicorn]
ROLLING_ALL = [DeployServer] + ROLLING_PEERS  # deploy-server drains on DRAIN=1
