"""The rig of the fault suites (test_chaos*.py): `sensorpipe producer` (with a ledger) and
`sensorpipe consumer` processes on fresh topics and a fresh database, the audit at the end of
each scenario, and the figures each run writes to `.state/chaos/<scenario>.json` (what
docs/RELIABILITY.md quotes).

SENSORPIPE_CHAOS=full selects the full runs (`make chaos`); SENSORPIPE_CHAOS_SEED replays a
run's random choices.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from sensorpipe.proof.audit import AuditReport, audit
from sensorpipe.proof.measure import topic_end
from sensorpipe.runtime.kafka import admin_client

from .conftest import REPO, Topics
from .helpers import scalar, wait_until

FULL = os.environ.get("SENSORPIPE_CHAOS", "fast") == "full"
SEED = int(os.environ.get("SENSORPIPE_CHAOS_SEED", str(int(time.time()))))
RESULTS = REPO / ".state" / "chaos"
RATE = 3000 if FULL else 2000  # events/s of the load under every fault
SENSORS = 300

# Chaos consumers give up on a silent member quickly, so each kill costs seconds, not minutes.
FAST_GROUP = {
    "SENSORPIPE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "SENSORPIPE_CONSUMER_MAX_POLL_INTERVAL_MS": "10000",
    "SENSORPIPE_CONSUMER_DB_IDLE_TX_TIMEOUT_MS": "8000",
    "SENSORPIPE_CONSUMER_RETRY_MAX_S": "2",
}

# A SIGKILLed broker runs no more code, but the kernel reaps it only after its in-flight disk
# writes complete, which under the suite's own load is not a matter of a few seconds.
REAP_S = 60


@dataclass
class Rig:
    """A producer with a ledger and consumer processes on fresh topics and a fresh database."""

    name: str
    topics: Topics
    dsn: str
    work: Path
    group: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:8]}")
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    consumers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ledgers: list[Path] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def bootstrap(self) -> str:
        return self.topics.settings.bootstrap()

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SENSORPIPE_KAFKA_TOPIC": self.topics.main,
            "SENSORPIPE_KAFKA_DLQ_TOPIC": self.topics.dlq,
            "SENSORPIPE_DATABASE_URL": self.dsn,
            "SENSORPIPE_STATE_DIR": str(self.work),  # the producer's seq store survives its restarts
            "SENSORPIPE_PRODUCER_METRICS_PORT": "0",
            "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
            "SENSORPIPE_CONSUMER_GROUP_ID": self.group,
            **FAST_GROUP,
            **(extra or {}),
        }

    def _log(self, what: str) -> Any:
        return open(self.work / f"{what}.log", "ab")

    def producer(
        self, rate: float = RATE, *, poison_ratio: float = 0.001, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        ledger = self.work / f"ledger-{len(self.ledgers)}.csv"
        self.ledgers.append(ledger)
        args = ["--rate", str(rate), "--sensors", str(SENSORS), "--ledger", str(ledger)]
        args += ["--duplicate-ratio", "0.01", "--poison-ratio", str(poison_ratio)]
        p = self._spawn("producer", [sys.executable, "-m", "sensorpipe", "producer", *args], env)
        self.producers.append(p)
        return p

    def consumer(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        pythonpath: Path | None = None,
        log: str = "consumer",
    ) -> subprocess.Popen[bytes]:
        """`prefix`: a command the consumer runs under (a network namespace); `pythonpath`: the
        sensorpipe package to run instead of this checkout's (an earlier release); `log`: the
        name of its log file in the rig's folder."""
        if pythonpath is not None:
            env = {**(env or {}), "PYTHONPATH": str(pythonpath)}
        p = self._spawn(log, [*(prefix or []), sys.executable, "-m", "sensorpipe", "consumer", *args], env)
        self.consumers.append(p)
        return p

    def _spawn(self, what: str, cmd: list[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        with self._log(what) as log:
            return subprocess.Popen(cmd, env=self.env(env), stdout=log, stderr=log)

    def stored(self) -> int:
        return int(scalar(self.dsn, "SELECT count(*) FROM metrics"))

    def committed(self) -> dict[int, int]:
        """The group's committed offset of each partition (0 where none is committed yet)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "log_level": 0})
        try:
            tps = [TopicPartition(self.topics.main, p) for p in range(12)]
            return {tp.partition: max(tp.offset, 0) for tp in c.committed(tps, timeout=10)}
        finally:
            c.close()

    def members(self) -> list[tuple[str, list[int]]]:
        """The group's members: each one's client host and the partitions it holds."""
        admin = admin_client(self.bootstrap)
        desc = admin.describe_consumer_groups([self.group], request_timeout=10)[self.group].result()
        return [
            (m.host, sorted(tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])))
            for m in desc.members
        ]

    def lag(self) -> int:
        """Messages on the topic not yet covered by the group's committed offsets (the ends are
        read after the offsets, so this never comes out below the true lag)."""
        committed = sum(self.committed().values())
        return topic_end(self.bootstrap, self.topics.main) - committed

    def running_consumers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.consumers if p.poll() is None]

    def finish(self, drain_timeout: float = 240) -> AuditReport:
        """Stop the load, let the consumers drain it, stop them, audit, record the figures."""
        for p in self.producers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        self.figures["producer_exit_codes"] = [p.wait(180) for p in self.producers]
        if not self.running_consumers():
            self.consumer()
        t0 = time.monotonic()
        wait_until(lambda: self.lag() == 0, drain_timeout, f"{self.name}: the consumers to drain the topic", step=1)
        self.figures["drain_after_load_s"] = round(time.monotonic() - t0, 1)
        running = self.running_consumers()
        for p in running:
            p.send_signal(signal.SIGTERM)
        self.figures["consumer_exit_codes"] = [p.wait(60) for p in running]
        report = audit(self.dsn, self.bootstrap, self.topics.main, self.ledgers)
        self._record(report)
        return report

    def _record(self, r: AuditReport) -> None:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(stored), 0), coalesce(sum(duplicates), 0), coalesce(sum(redeliveries), 0)"
                " FROM ingest_counters"
            ).fetchone()
            dlq = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        assert row is not None and dlq is not None
        out = {
            "scenario": self.name,
            "mode": "full" if FULL else "fast",
            "seed": SEED,
            "rate": RATE,
            "sensors": SENSORS,
            "seconds": round(time.monotonic() - self.started, 1),
            "acked": r.acked,
            "unknown": r.unknown,
            "failed": r.failed,
            "stored": r.stored,
            "lost": r.lost,
            "phantom": r.phantom,
            "duplicate_rows": r.duplicate_rows_metrics + r.duplicate_rows_processed,
            "order_violations": r.order_violations,
            "duplicates_sent": r.duplicates_sent,
            "duplicates_ignored": int(row[1]),
            "redeliveries_absorbed": int(row[2]),
            "poison_acked": r.poison_acked,
            "dead_lettered": int(dlq[0]),
            "poison_missing": r.poison_missing,
            "refused_out_of_window": r.refused_out_of_window,
            **self.figures,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.name}.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
        print(f"\nchaos {self.name}: {orjson.dumps(out).decode()}")

    def kill_all(self) -> None:
        for p in [*self.producers, *self.consumers]:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def assert_clean(r: AuditReport, *, phantom_ok: int = 0) -> None:
    assert r.acked > 0, "the load produced nothing"
    assert r.lost == 0, f"{r.lost} acknowledged events lost (kafka {r.lost_in_kafka}, consumer {r.lost_in_consumer})"
    assert r.duplicate_rows_metrics == 0 and r.duplicate_rows_processed == 0, "an event id stored twice"
    assert r.order_violations == 0, f"{r.order_violations} per-sensor order violations"
    assert r.poison_missing == 0, f"{r.poison_missing} acked poison messages not dead-lettered"
    assert r.poison_acked > 0, "the load carried no poison"
    assert r.phantom <= phantom_ok, f"{r.phantom} stored events no producer attempted"


@pytest.fixture
def rig(request: pytest.FixtureRequest, topics: Topics, db_dsn: str, tmp_path: Path) -> Iterator[Rig]:
    name = request.node.name.removeprefix("test_")
    r = Rig(name, topics, db_dsn, tmp_path)
    yield r
    r.kill_all()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


def wait_exit(p: subprocess.Popen[bytes], timeout: float, what: str) -> int:
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError(f"{what} did not happen within {timeout}s") from None
