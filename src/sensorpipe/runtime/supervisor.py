"""`sensorpipe up`: start the platform, then the pipeline components, and supervise them.

Order of start: PostgreSQL, Kafka, migrations, topics, then API, consumers, producer.
Order of stop is the reverse, so the producer flushes and the consumers commit while
the broker and the database are still there. Every child runs in its own session and
carries a parent-death signal, so killing the supervisor leaves no orphan.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import orjson

from sensorpipe.contracts import disk as disk_contract
from sensorpipe.contracts.disk import DiskPlan
from sensorpipe.runtime import disk
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.kafka import LocalKafka, classpath, cluster_answers, java_binary
from sensorpipe.runtime.postgres import LocalPostgres, find_bindir
from sensorpipe.runtime.procs import PidRecord, PlatformError, RunDir, spawn, start_time, stop_pid
from sensorpipe.settings import DatabaseSettings, DiskSettings, KafkaSettings
from sensorpipe.storage.migrate import migrate

Log = Callable[[str], None]


@dataclass
class Component:
    """A pipeline process the supervisor keeps alive."""

    name: str
    argv: list[str]
    address: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    backoff: float = field(default=1.0)


def python_component(
    name: str, args: Sequence[str], address: str | None = None, env: dict[str, str] | None = None
) -> Component:
    return Component(name=name, argv=[sys.executable, "-m", "sensorpipe", *args], address=address, env=env or {})


def _kafka_name(node: int) -> str:
    """A Kafka node's name in the pid records and `status` (node 1 is plain `kafka`)."""
    return "kafka" if node == 1 else f"kafka-{node}"


class Platform:
    """Kafka and PostgreSQL: local ones owned by us, or external ones named in settings."""

    def __init__(
        self,
        kafka: KafkaSettings,
        db: DatabaseSettings,
        state_dir: Path,
        log: Log,
        after_start: Callable[[Platform], None] | None = None,
        disk_settings: DiskSettings | None = None,
    ) -> None:
        self.after_start = after_start
        self.disk_settings = disk_settings or DiskSettings()
        self.disk_plan: DiskPlan | None = None
        self.rate_hint = 0.0  # the producer's configured rate, for the disk projection
        self.kafka_settings = kafka
        self.db_settings = db
        self.state_dir = state_dir
        self.run = RunDir(state_dir)
        self.log = log
        self.kafka = LocalKafka(kafka, state_dir, kafka.libs_dir)
        self.pg = LocalPostgres(db, state_dir) if db.local else None
        if self.pg is not None and db.password is None and db.passfile is None:
            # the local cluster's password file is this state folder's, whatever the environment says
            self.db_settings = db.model_copy(update={"passfile": self.pg.passfile})
        self.kafka_procs: list[subprocess.Popen[bytes]] = []
        self.pg_proc: subprocess.Popen[bytes] | None = None

    def preflight(self) -> None:
        """Check every prerequisite before starting anything, so a missing one costs nothing."""
        if self.pg is not None:
            find_bindir()
        if self.kafka_settings.local:
            java_binary()
            classpath(self.kafka.libs_dir)

    def watched(self) -> list[Path]:
        """The folders whose filesystems the consumer keeps above the free-space floor."""
        found = [self.state_dir] + ([self.pg.data_dir()] if self.pg is not None else [])
        return found + [p for p in self.disk_settings.watch if p not in found]

    def plan_disk(self) -> DiskPlan:
        """Split the budget (once per start) and record the plan for `status` and the API."""
        pg_data = self.pg.data_dir() if self.pg is not None else None
        now = disk_contract.usage(self.state_dir, pg_data)
        plan = disk.plan_for(self.disk_settings, self.state_dir, now)
        disk_contract.write_plan(self.state_dir, plan, self.watched(), pg_data)
        for line in disk.projection(plan, now, self.rate_hint):
            self.log(line)
        if self.pg is not None:
            self.pg.max_wal_bytes = plan.postgres_wal()
        self.disk_plan = plan
        return plan

    def start(self) -> None:
        self.preflight()
        try:
            plan = self.plan_disk()
            if self.pg is not None:
                self.log(f"starting PostgreSQL on 127.0.0.1:{self.db_settings.port} (data: {self.pg.data_dir()})")
                self.pg_proc = self.pg.start()
                self._record("postgres", self.pg_proc, self.db_settings.shown(), self.pg.log_path)
            else:
                self.log("using the external PostgreSQL from SENSORPIPE_DATABASE_URL")
            if self.kafka_settings.local:
                self.log(f"starting Kafka ({self.kafka_settings.brokers} node(s)) on {self.kafka_settings.bootstrap()}")
                self.kafka_procs = self.kafka.start()
                for node, p in zip(self.kafka.node_ids(), self.kafka_procs, strict=True):
                    self._record_kafka(node, p)
            else:
                self.log(f"using the external Kafka at {self.kafka_settings.bootstrap()}")
                if not cluster_answers(self.kafka_settings.bootstrap(), timeout=10):
                    raise PlatformError(
                        f"the Kafka cluster at {self.kafka_settings.bootstrap()} (SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS) "
                        f"does not answer"
                    )
            applied = migrate(self.db_settings.dsn())
            if applied:
                self.log(f"applied migrations {applied}")
            limits = None
            if self.kafka_settings.local:
                limits = plan.kafka_limits(self.kafka_settings.partitions, self.kafka_settings.replication_factor())
            ensure_topics(self.kafka_settings, limits=limits)
            if self.after_start is not None:
                self.after_start(self)
        except BaseException:
            self.stop()
            raise

    def _record(self, name: str, p: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
        started = start_time(p.pid)
        if started is not None:
            self.run.write(PidRecord(name, p.pid, started, address, str(log_path)))

    def _record_kafka(self, node: int, p: subprocess.Popen[bytes]) -> None:
        where = f"{self.kafka.settings.host}:{self.kafka.broker_port(node)}"
        self._record(_kafka_name(node), p, where, self.kafka.log_path(node))

    def stop(self) -> None:
        for node, p in reversed(list(zip(self.kafka.node_ids(), self.kafka_procs, strict=False))):
            self.log(f"stopping Kafka node {node}")
            stop_pid(p.pid, signal.SIGTERM, timeout=60)
            self.run.remove(_kafka_name(node))
        self.kafka_procs = []
        if self.pg_proc is not None:
            self.log("stopping PostgreSQL")
            stop_pid(self.pg_proc.pid, signal.SIGINT, timeout=60)
            self.run.remove("postgres")
            self.pg_proc = None

    def restart_postgres(self) -> None:
        """Start the local cluster again after it was stopped (e.g. by `pg_ctl stop -m immediate`)."""
        assert self.pg is not None
        if self.pg_proc is not None:
            self.pg_proc.wait(timeout=60)
        self.pg_proc = self.pg.start()
        self._record("postgres", self.pg_proc, self.db_settings.shown(), self.pg.log_path)

    def restart_kafka_node(self, node: int) -> subprocess.Popen[bytes]:
        """Start one local Kafka node again after it died (e.g. SIGKILL in the chaos suite)."""
        old = self.kafka_procs[node - 1]
        if old.poll() is None:
            raise PlatformError(f"Kafka node {node} (pid {old.pid}) is still running")
        p = self.kafka.restart_node(node)
        self.kafka_procs[node - 1] = p
        self._record_kafka(node, p)
        return p

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_settings.bootstrap()
        env["SENSORPIPE_DATABASE_URL"] = self.db_settings.dsn()
        env["SENSORPIPE_STATE_DIR"] = str(self.state_dir)
        env["SENSORPIPE_DISK_WATCH"] = orjson.dumps([str(p) for p in self.watched()]).decode()
        if self.pg is not None and self.disk_plan is not None:
            env["SENSORPIPE_DISK_POSTGRES_BYTES"] = str(self.disk_plan.postgres_data())
        return env


class Supervisor:
    """Keeps components running; restarts a crashed one with exponential backoff."""

    MAX_BACKOFF = 30.0
    HEALTHY_AFTER = 60.0  # a run this long resets the backoff
    LOG_CHECK_S = 10.0  # how often the logs are checked against their cap

    def __init__(self, platform: Platform, components: list[Component], log: Log) -> None:
        self.platform = platform
        self.components = components
        self.log = log
        self.stopping = False
        self._next_log_check = 0.0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _start(self, c: Component) -> None:
        log_path = self.platform.state_dir / "logs" / f"{c.name}.log"
        c.proc = spawn(c.argv, log_path, env={**self.platform.child_env(), **c.env})
        c.started_at = time.monotonic()
        started = start_time(c.proc.pid)
        if started is not None:
            self.platform.run.write(PidRecord(c.name, c.proc.pid, started, c.address, str(log_path)))

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        self.platform.preflight()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        run = self.platform.run
        me = start_time(os.getpid())
        assert me is not None
        run.write(PidRecord("supervisor", os.getpid(), me, None, None))
        try:
            self.platform.start()
            for c in self.components:
                self._start(c)
            if on_ready is not None:
                on_ready()
            while not self.stopping:
                self._tick()
                time.sleep(0.2)
            return 0
        finally:
            self.log("stopping")
            for c in reversed(self.components):
                if c.proc is not None and c.proc.poll() is None:
                    self.log(f"stopping {c.name}")
                    if stop_pid(c.proc.pid, c.stop_signal, c.stop_timeout):
                        self.log(f"{c.name} did not stop within {c.stop_timeout:.0f}s and was killed")
                run.remove(c.name)
            self.platform.stop()
            run.remove("supervisor")
            self.log("stopped")

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_log_check:
            self._next_log_check = now + self.LOG_CHECK_S
            disk.cap_logs(self.platform.state_dir / "logs")
        for c in self.components:
            if c.proc is None:
                if now >= c.next_start:
                    self._start(c)
                continue
            code = c.proc.poll()
            if code is None:
                if now - c.started_at > self.HEALTHY_AFTER:
                    c.backoff = 1.0
                continue
            c.restarts += 1
            self.log(f"{c.name} exited with status {code}; restart #{c.restarts} in {c.backoff:.0f}s")
            self.platform.run.remove(c.name)
            c.proc = None
            c.next_start = now + c.backoff
            c.backoff = min(c.backoff * 2, self.MAX_BACKOFF)
        for node, p in zip(self.platform.kafka.node_ids(), self.platform.kafka_procs, strict=False):
            if p.poll() is not None:
                raise PlatformError(
                    f"Kafka node {node} exited with status {p.returncode}; see {self.platform.kafka.log_path(node)}"
                )
        if self.platform.pg_proc is not None and self.platform.pg_proc.poll() is not None:
            pg = self.platform.pg
            raise PlatformError(
                f"PostgreSQL exited with status {self.platform.pg_proc.returncode}; "
                f"see {pg.log_path if pg else 'its log'}"
            )


def down(state_dir: Path, purge: bool, log: Log, timeout: float = 120.0) -> None:
    """Stop a running stack (through its supervisor when there is one) and optionally purge."""
    run = RunDir(state_dir)
    sup = run.read("supervisor")
    if sup is not None and sup.alive():
        log(f"stopping the supervisor (pid {sup.pid})")
        os.kill(sup.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while sup.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if sup.alive():
            log("the supervisor did not stop in time; stopping its components directly")
    # Whatever is left (a supervisor killed with -9, or one that timed out): stop it directly.
    for rec in run.all():
        if rec.alive():
            log(f"stopping {rec.name} (pid {rec.pid})")
            sig = signal.SIGINT if rec.name == "postgres" else signal.SIGTERM
            stop_pid(rec.pid, sig, timeout=60)
        run.remove(rec.name)
    if purge:
        pointer = state_dir / "postgres" / "data-location"
        if pointer.is_file():
            data = Path(pointer.read_text().strip())
            if not data.is_relative_to(state_dir):
                shutil.rmtree(data.parent, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(state_dir)
        log(f"purged {state_dir}")
