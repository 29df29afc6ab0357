"""`sensorpipe bench peer`: sensorpipe's consumer against the peer a user would run instead
(Kafka Connect with the Debezium JDBC sink, `proof.peer`), on the same preloaded events,
broker and PostgreSQL server.

Each sink drains the same topic into a fresh database of its own. For each, the stage
measures:
- events/s over the drain's span, from the first row inserted to the last (both tables
  stamp `ingested_at` on insert, so both spans are read the same way);
- the CPU that the sink process, PostgreSQL (the server and its backends) and the broker
  spent per event, counted from the sink's first stored row to its last, so neither a
  process's start-up nor its idle wait for the end is counted;
- the sink process's peak RSS.
Events per CPU-second is the events over the CPU of all three. Then `proof.peer_check`
feeds both the same duplicates and poison and reports what each did with them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg

from sensorpipe.proof import peer
from sensorpipe.proof import results as res
from sensorpipe.proof.measure import ProcStats, consumer_lag, free_port, platform_pids
from sensorpipe.settings import KafkaSettings
from sensorpipe.storage import bench as bq
from sensorpipe.storage import peer as sq

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

PLANS = [peer.SinkPlan(1, True), peer.SinkPlan(1, False), peer.SinkPlan(2, True), peer.SinkPlan(2, False)]
OURS = "sensorpipe consumer (1 process)"
DRAIN_TIMEOUT_S = 900


def peer_stage(b: Bench) -> res.PeerResult:
    from sensorpipe.proof.peer_check import correctness
    from sensorpipe.proof.peer_rates import peer_rates

    shutil.rmtree(runs_home(b), ignore_errors=True)
    n = 200_000 if b.quick else 1_000_000
    k, _producer = b.preload(n, "peer")
    events = b.high_watermark(k)
    runs = [ours(b, k, events)]
    for plan in PLANS:
        runs.append(connect(b, k, events, plan))
    b.drop_topics()  # a million events, four times over: not kept while the rates run
    return res.PeerResult(events=events, runs=runs, correctness=correctness(b), rates=peer_rates(b), peer=versions())


def versions() -> str:
    libs = sorted(p.name for p in peer.LIBS.glob("connect-runtime-*.jar"))
    plugin = sorted(p.name for p in (peer.PLUGINS / "debezium-jdbc").glob("debezium-connector-jdbc-*.jar"))
    name = libs[0].removeprefix("connect-runtime-").removesuffix(".jar") if libs else "?"
    sink = plugin[0].removeprefix("debezium-connector-jdbc-").removesuffix(".jar") if plugin else "?"
    return f"Apache Kafka Connect {name}, Debezium JDBC sink {sink}"


def ours(b: Bench, k: KafkaSettings, events: int) -> res.SinkRun:
    b.log(f"peer: {OURS} drains {events:,} events")
    dsn = b.database("peer_ours")
    proc = b.spawn(["consumer"], b.env(k, dsn, SENSORPIPE_CONSUMER_GROUP_ID=f"bench-peer-{uuid.uuid4().hex[:6]}"))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            costs = _measure(b, "consumer", proc.pid, lambda: bq.stored(conn) > 0, lambda: bq.stored(conn) >= events)
    finally:
        proc.terminate()
        proc.wait(60)
    rows, seconds = bq.drain_span(dsn)
    return _run(OURS, rows, seconds, costs, [])


def connect(b: Bench, k: KafkaSettings, events: int, plan: peer.SinkPlan) -> res.SinkRun:
    label = f"Kafka Connect + Debezium JDBC sink ({plan.label})"
    b.log(f"peer: {label} drains {events:,} events")
    w, dsn = worker(b, k, f"peer_{plan.tasks}_{int(plan.unnest)}", plan)
    with w:
        w.wait_running()
        # Progress is read from the connector's committed offsets (it commits after its rows
        # are written): counting a million rows twice a second would bill PostgreSQL for it.
        with psycopg.connect(dsn, autocommit=True) as conn:
            costs = _measure(
                b,
                "connect",
                w.pid,
                lambda: sq.any_row(conn),
                lambda: consumer_lag(k, w.group, events) == 0,
                w.failed_tasks,
            )
        failed = w.failed_tasks()
    rows, seconds, _p50, _p99 = sq.span(dsn)
    return _run(label, rows, seconds, costs, failed)


def worker(b: Bench, k: KafkaSettings, database: str, plan: peer.SinkPlan) -> tuple[peer.Worker, str]:
    """A worker (not started) that sinks `k`'s topic into a fresh database `database` holding
    the peer's table, with day partitions for the same window as `metrics`; and that
    database's DSN. Its dead-letter topic is the run's, deleted with its other topics."""
    dsn = b.database(database)
    today = datetime.now(UTC).date()
    sq.create_table(dsn, today - timedelta(days=b.db.retention_days), today + timedelta(days=3))
    name = f"peer-{uuid.uuid4().hex[:6]}"
    t = peer.Target(
        bootstrap=k.bootstrap(),
        topic=k.topic,
        jdbc_url=f"jdbc:postgresql://127.0.0.1:{b.db.port}/{urlsplit(dsn).path.lstrip('/')}",
        user=b.db.user,
        password=b.pg.password(),
    )
    if t.dlq_topic not in b.topics:  # several workers may sink the same topic
        b.topics.append(t.dlq_topic)
    return peer.Worker(runs_home(b) / name, t, plan, free_port(), name), dsn


def runs_home(b: Bench) -> Path:
    """Where this stage's workers keep their configuration, logs and offsets: one folder per
    worker, under one that each run of the stage empties first, so only the last run's stay."""
    return b.state_dir / "bench" / "connect"


def _measure(
    b: Bench,
    sink: str,
    pid: int,
    started: Callable[[], bool],
    done: Callable[[], bool],
    failed: Callable[[], list[str]] = list,
) -> dict[str, tuple[float, float]]:
    """Waits until `done()` (or the sink fails, or the time is up); returns process -> (CPU
    seconds from when `started()` first held, peak RSS MB). Both checks must be cheap: they
    run several times a second beside the work measured."""
    pids = platform_pids(b.state_dir)
    stats = {
        sink: ProcStats(pid).start(),
        "postgres": ProcStats(pids["postgres"], children=True).start(),
        "kafka": ProcStats(pids["kafka"]).start(),
    }
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    base: dict[str, float] | None = None
    while time.monotonic() < deadline:
        if base is None and started():
            base = {name: s.cpu_s for name, s in stats.items()}
        if (base is not None and done()) or failed():
            break
        time.sleep(0.2 if base is None else 0.5)
    ends = {name: s.stop() for name, s in stats.items()}
    start = base or dict.fromkeys(stats, 0.0)
    return {name: (round(e.cpu_s - start[name], 2), e.peak_rss_mb) for name, e in ends.items()}


def _run(
    label: str, rows: int, seconds: float, costs: dict[str, tuple[float, float]], failed: list[str]
) -> res.SinkRun:
    per = 1e6 / max(rows, 1)
    cpu = sum(c for c, _ in costs.values())
    sink_rss = next(iter(costs.values()))[1]
    return res.SinkRun(
        sink=label,
        events=rows,
        seconds=round(seconds, 2),
        events_per_s=round(rows / seconds) if seconds > 0 else 0,
        cpu_us_per_event={name: round(c * per, 2) for name, (c, _) in costs.items()},
        events_per_cpu_s=round(rows / cpu) if cpu > 0 else 0,
        peak_rss_mb=sink_rss,
        failed=failed,
    )


def wait_idle(check: Callable[[], Any], timeout_s: float = 120, quiet_s: float = 8) -> None:
    """Returns once `check()` has given the same answer for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = check(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = check()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
