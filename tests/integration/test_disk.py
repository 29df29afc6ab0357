"""The disk budget against the real broker and database: size retention drops the oldest raw
days (never today's) and moves the dedupe window with them; a consumer held by its disk guard
writes nothing and moves no offset, then drains everything once the guard lets go; the
local stack's topics carry the budget's size limits."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from sensorpipe.consumer.guard import DiskGuard
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.service import ConsumerService
from sensorpipe.contracts import events as ev
from sensorpipe.contracts.disk import DiskPlan, FsUsage, GiB
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.kafka import admin_client
from sensorpipe.settings import ConsumerSettings, DatabaseSettings
from sensorpipe.storage import retention

from .conftest import Topics
from .helpers import make_events, produce_events, scalar, wait_until


def _fill_days(dsn: str, days: list[int], rows: int) -> None:
    """`rows` readings (with their dedupe rows) on each of the UTC days `days` back from today."""
    today = datetime.now(UTC).date()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT sensorpipe_ensure_metrics_partitions(%s, %s)", (today - timedelta(days=max(days)), today))
        for d in days:
            day = today - timedelta(days=d)
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            conn.execute(
                """
                WITH ids AS (SELECT g, %(d)s || '-' || g AS eid, %(t)s + g * interval '1 ms' AS ts
                             FROM generate_series(1, %(n)s) g),
                pe AS (INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)
                       SELECT eid, 0, g, 0, ts FROM ids)
                INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)
                SELECT ts, 's-' || (g %% 50), eid, g, g, 0, g FROM ids
                """,
                {"d": str(d), "t": noon, "n": rows},
            )
        conn.execute("ANALYZE metrics")


def _days_kept(dsn: str) -> list[int]:
    today = datetime.now(UTC).date()
    q = "SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM metrics ORDER BY 1"
    with psycopg.connect(dsn) as conn:
        return sorted(((today - r[0]).days for r in conn.execute(q)), reverse=True)


def test_size_retention_drops_the_oldest_days_first_and_never_today(db_dsn: str) -> None:
    _fill_days(db_dsn, [4, 3, 2, 1, 0], rows=20_000)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        size = retention.store_bytes(conn)
        days = dict(retention.raw_days(conn, datetime.now(UTC).date()))
        day_bytes = min(days.values())
        # room for all but about two and a half days of raw rows
        share = size - int(2.5 * day_bytes)
        r = retention.enforce(conn, share, datetime.now(UTC).date())
        assert [d.day for d in r.drops] == sorted(d.day for d in r.drops), "oldest first"
        assert len(r.drops) >= 2 and not r.over
        assert r.store_bytes <= share
        kept = _days_kept(db_dsn)
        assert 0 in kept and 4 not in kept and 3 not in kept
        # the dedupe rows of the dropped days went with them, and the window moved past them
        oldest_kept = datetime.now(UTC).date() - timedelta(days=max(kept))
        assert scalar(db_dsn, "SELECT count(*) FROM processed_events WHERE event_ts < %s", (oldest_kept,)) == 0
        horizon = retention.horizon(conn)
        assert horizon is not None and horizon.date() <= oldest_kept
        logged = retention.recent_drops(conn)
        assert {(row[1], row[2]) for row in logged} == {(d.day, "size") for d in r.drops}
        assert all(row[3] > 0 and row[4] > 0 for row in logged)
        # a share below today's rows alone: everything before today goes, then it is over
        r2 = retention.enforce(conn, 1, datetime.now(UTC).date())
        assert r2.over and _days_kept(db_dsn) == [0]
        assert retention.enforce(conn, 1, datetime.now(UTC).date()).drops == []


def test_one_drop_brings_the_files_under_the_share_and_the_next_pass_does_nothing(db_dsn: str) -> None:
    _fill_days(db_dsn, [3, 2, 1, 0], rows=20_000)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        size = retention.store_bytes(conn)
        share = size - 1  # just over: the oldest day's partition leaving the disk is enough
        first = retention.enforce(conn, share, today)
        assert len(first.drops) == 1 and not first.over and first.store_bytes <= share
        # its dedupe rows left space inside processed_events, not a smaller file: the files
        # are under the share all the same, and nothing more goes
        assert retention.enforce(conn, share, today).drops == []
        assert len(_days_kept(db_dsn)) == 3
        with pytest.raises(psycopg.errors.RaiseException, match="only days before today"):
            conn.execute("SELECT sensorpipe_drop_raw_day(%s, 'size', %s)", (today, today))


def test_a_high_water_mark_under_the_share_drops_before_the_share_is_reached(db_dsn: str) -> None:
    _fill_days(db_dsn, [2, 1, 0], rows=20_000)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        size = retention.store_bytes(conn)
        share = size + 1  # under the share: nothing goes without a mark
        assert retention.enforce(conn, share, today).drops == []
        r = retention.enforce(conn, share, today, target=size - 1)
        assert [d.day for d in r.drops] == [today - timedelta(days=2)]
        assert r.found_bytes == size and r.store_bytes < size and not r.over


class FakeDisk:
    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, _path: Path) -> FsUsage:
        return FsUsage(total=100 * GiB, free=self.free)


@pytest.fixture
def held(topics: Topics, db_dsn: str) -> Iterator[tuple[ConsumerService, FakeDisk]]:
    disk = FakeDisk(free=GiB // 2)  # under the floor of 1 GiB from the start
    settings = ConsumerSettings.model_validate(
        {"group_id": f"g-{uuid.uuid4().hex[:8]}", "batch_wait_ms": 100, "metrics_port": 0}
    )
    guard = DiskGuard([Path("/watched")], floor="1GiB", check_s=0.2, probe=disk)
    svc = ConsumerService(topics.settings, settings, DatabaseSettings(url=db_dsn), ConsumerMetrics(), guard=guard)
    svc.start()
    yield svc, disk
    with contextlib.suppress(RuntimeError):
        svc.close()


def test_a_consumer_under_the_floor_writes_nothing_then_drains_when_space_returns(
    held: tuple[ConsumerService, FakeDisk], topics: Topics, db_dsn: str
) -> None:
    svc, disk = held
    events = make_events(40, 50)
    produce_events(topics.settings.bootstrap(), topics.main, events)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        svc.step()
    assert svc.assigned, "the held consumer keeps its partitions (it still polls)"
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == 0
    assert scalar(db_dsn, "SELECT count(*) FROM processed_ranges") == 0
    assert all(tp.offset < 0 for tp in svc.consumer.committed(svc.consumer.assignment(), timeout=10))
    assert svc.metrics.paused._value.get() == 1
    disk.free = 5 * GiB
    deadline = time.monotonic() + 60
    while scalar(db_dsn, "SELECT count(*) FROM metrics") < len(events) and time.monotonic() < deadline:
        svc.step()
    svc.close()
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == len(events)
    assert scalar(db_dsn, "SELECT count(DISTINCT event_id) FROM metrics") == len(events)
    assert svc.metrics.paused._value.get() == 0


def test_a_consumer_dead_letters_events_behind_the_raw_horizon(topics: Topics, db_dsn: str) -> None:
    _fill_days(db_dsn, [2, 1, 0], rows=100)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        retention.enforce(conn, 1, datetime.now(UTC).date())  # drops days 2 and 1
    yesterday = int((time.time() - 86_400) * 1000)
    late, fresh = make_events(1, 1, ts_ms=yesterday), make_events(1, 1)
    produce_events(topics.settings.bootstrap(), topics.main, [*late, *fresh])
    settings = ConsumerSettings.model_validate(
        {"group_id": f"g-{uuid.uuid4().hex[:8]}", "batch_wait_ms": 100, "metrics_port": 0}
    )
    svc = ConsumerService(topics.settings, settings, DatabaseSettings(url=db_dsn), ConsumerMetrics())
    svc.start()
    try:
        deadline = time.monotonic() + 30
        while scalar(db_dsn, "SELECT count(*) FROM dead_letters") < 1 and time.monotonic() < deadline:
            svc.step()
    finally:
        svc.close()
    assert scalar(db_dsn, "SELECT reason FROM dead_letters") == ev.Reason.TIMESTAMP_OUT_OF_WINDOW.value
    assert scalar(db_dsn, "SELECT count(*) FROM metrics WHERE event_id = %s", (fresh[0].event_id,)) == 1
    assert scalar(db_dsn, "SELECT count(*) FROM metrics WHERE event_id = %s", (late[0].event_id,)) == 0


def test_a_day_dropped_by_another_consumer_is_dead_lettered_not_retried(topics: Topics, db_dsn: str) -> None:
    """A consumer's raw horizon can be older than a drop another consumer made. Its write into
    the dropped day fails; it must then learn the new horizon and dead-letter the event as out
    of window, instead of retrying the batch until its next maintenance."""
    _fill_days(db_dsn, [2, 1, 0], rows=100)
    settings = ConsumerSettings.model_validate(
        {"group_id": f"g-{uuid.uuid4().hex[:8]}", "batch_wait_ms": 100, "metrics_port": 0, "retry_max_s": 1.0}
    )
    svc = ConsumerService(topics.settings, settings, DatabaseSettings(url=db_dsn), ConsumerMetrics())
    svc.start()
    try:
        first = make_events(1, 1)
        produce_events(topics.settings.bootstrap(), topics.main, first)
        deadline = time.monotonic() + 30
        while scalar(db_dsn, "SELECT count(*) FROM metrics WHERE event_id = %s", (first[0].event_id,)) == 0:
            assert time.monotonic() < deadline, "the first event was not stored"
            svc.step()
        with psycopg.connect(db_dsn, autocommit=True) as conn:  # the other consumer's size retention
            dropped = {d.day for d in retention.enforce(conn, 1, datetime.now(UTC).date()).drops}
        assert datetime.now(UTC).date() - timedelta(days=1) in dropped
        late = make_events(1, 1, ts_ms=int((time.time() - 86_400) * 1000))
        fresh = make_events(1, 1)
        produce_events(topics.settings.bootstrap(), topics.main, [*late, *fresh])
        deadline = time.monotonic() + 30
        while scalar(db_dsn, "SELECT count(*) FROM dead_letters") < 1 and time.monotonic() < deadline:
            svc.step()
    finally:
        svc.close()
    assert scalar(db_dsn, "SELECT reason FROM dead_letters") == ev.Reason.TIMESTAMP_OUT_OF_WINDOW.value
    assert scalar(db_dsn, "SELECT count(*) FROM metrics WHERE event_id = %s", (fresh[0].event_id,)) == 1


def test_topics_carry_the_budget_limits_and_existing_ones_are_updated(topics: Topics) -> None:
    plan = DiskPlan.make("6GiB", "1GiB", 0.25, FsUsage(100 * GiB, 90 * GiB), 0)
    limits = plan.kafka_limits(12, 1)
    ensure_topics(topics.settings, limits=limits)  # the topics exist: their configs are altered
    admin = admin_client(topics.settings.bootstrap())

    def described(name: str) -> tuple[str, str]:
        res = ConfigResource(ResourceType.TOPIC, name)
        got = admin.describe_configs([res])[res].result(timeout=10)
        return got["retention.bytes"].value, got["segment.bytes"].value

    for name, lim in zip((topics.main, topics.dlq), limits, strict=True):
        # the controller has the change when the alter returns; the broker applies it from the
        # metadata log a moment later
        want = (str(lim.retention_bytes), str(lim.segment_bytes))
        wait_until(lambda n=name, w=want: described(n) == w, 15, f"{name} to carry its limits")
        assert described(name) == want
