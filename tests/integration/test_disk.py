"""The disk budget against the real broker and database: size retention drops the oldest raw
days (never today's) and moves the dedupe window with them; a consumer held by its disk guard
writes nothing and moves no offset, then drains everything once the guard lets go; the
local stack's topics carry the budget's size limits."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.settings import ConsumerSettings, DatabaseSettings
from sensorpipe.storage import bench as bq
from sensorpipe.storage import retention
from sensorpipe.storage.migrate import available, migrate

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


def _consumer(topics: Topics, dsn: str, **overrides: object) -> ConsumerService:
    """An in-process consumer of its own group on the test's topics, subscribed."""
    settings = ConsumerSettings.model_validate(
        {"group_id": f"g-{uuid.uuid4().hex[:8]}", "batch_wait_ms": 100, "metrics_port": 0, **overrides}
    )
    svc = ConsumerService(topics.settings, settings, DatabaseSettings(url=dsn), ConsumerMetrics())
    svc.start()
    return svc


def _step_until(svc: ConsumerService, pred: Callable[[], bool], timeout: float = 30) -> None:
    """Step `svc` until `pred` holds or `timeout` passes (the caller asserts the outcome)."""
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        svc.step()


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


# Plans that scan pg_class before joining pg_inherits: every catalog row meets the filters.
_CATALOG_FIRST = ("enable_nestloop", "enable_mergejoin", "enable_indexscan", "enable_bitmapscan")


def test_day_partitions_are_listed_by_pattern_under_any_plan(db_dsn: str) -> None:
    """A plan that filters pg_class before joining it may evaluate the day's parse on catalog
    rows that are not day partitions (pg_toast_2619...): the parse runs only on names that
    match the pattern (migration 011). A child that is not a day partition is ignored too."""
    _fill_days(db_dsn, [3, 1, 0], rows=100)
    _fill_minutes(db_dsn, [3, 0], sensors=2)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE metrics_not_a_day PARTITION OF metrics FOR VALUES FROM ('2200-01-01') TO ('2200-01-02')"
        )
        for setting in _CATALOG_FIRST:
            conn.execute(f"SET {setting} = off")
        before = [today - timedelta(days=d) for d in (3, 2, 1)]  # day 2's partitions exist, empty
        assert [d for d, _b in retention.raw_days(conn, today)] == before
        assert [d for d, _b in retention.minute_days(conn, today)] == before
        assert conn.execute("SELECT sensorpipe_apply_tiered_retention(%s, 2, 2, 3)", (today,)).fetchone() == (1,)
    assert _days_kept(db_dsn) == [1, 0]
    assert scalar(db_dsn, "SELECT count(*) FROM metrics_not_a_day") == 0


_HEAP = """SELECT coalesce((SELECT sum(pg_table_size(relid)) FROM pg_partition_tree(%s::regclass)),
                          pg_table_size(%s::regclass))::int8"""


def test_the_row_anatomy_accounts_for_each_tables_bytes(db_dsn: str) -> None:
    """The storage stage's profile of a row: tuple, line pointer and page slack add up to the
    heap's bytes per row; every index of both tables is sized, partitioned or not."""
    _fill_days(db_dsn, [1, 0], rows=5_000)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    an = bq.row_anatomy(db_dsn)
    for name, table in (("raw rows", "metrics"), ("dedupe", "processed_events")):
        a = an[name]
        assert a["rows"] == 10_000
        assert a["tuple"] > 24 + sum(a["columns"].values()) * 0.8  # the header, then the columns
        heap = scalar(db_dsn, _HEAP, (table, table))
        assert abs(a["tuple"] + a["line_pointer"] + a["page_slack"] - heap / 10_000) < 0.2
        assert a["indexes"] and all(v >= 0 for v in a["indexes"].values())
    assert an["dedupe"]["indexes"]["processed_events_pkey"] > 16
    assert set(an["raw rows"]["indexes"]) == {"metrics_sensor_ts", "metrics_ts"}
    assert an["raw rows"]["columns"]["event_id"] > 0
    # the parts at rest count the rollups' plain tables as well as the partitioned one
    rollups = bq.bytes_at_rest(db_dsn)["rollups"]
    tables = ("metrics_1m", "metrics_1h", "metrics_1m_partition", "metrics_1h_partition")
    assert rollups["heap"] == sum(scalar(db_dsn, _HEAP, (t, t)) for t in tables)
    assert scalar(db_dsn, _HEAP, ("metrics_1h", "metrics_1h")) > 0


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


def _fill_minutes(dsn: str, days: list[int], sensors: int = 50, partitioned: bool = True) -> None:
    """A day of 1-minute and hourly rollups for `sensors` sensors on each of the days back
    (`partitioned`: the store has migration 010, whose day partitions are created first)."""
    today = datetime.now(UTC).date()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for d in days:
            start = datetime.combine(today - timedelta(days=d), datetime.min.time(), UTC)
            if partitioned:
                conn.execute("SELECT sensorpipe_ensure_minute_day(%s)", (start.date(),))
            conn.execute(
                """INSERT INTO metrics_1m (sensor_id, minute, count, sum, min, max)
                   SELECT 's-' || s, %(t)s + m * interval '1 minute', 60, 60, 0, 2
                   FROM generate_series(0, %(n)s - 1) s, generate_series(0, 1439) m""",
                {"t": start, "n": sensors},
            )
            conn.execute(
                """INSERT INTO metrics_1h (sensor_id, hour, count, sum, min, max)
                   SELECT 's-' || s, %(t)s + h * interval '1 hour', 3600, 3600, 0, 2
                   FROM generate_series(0, %(n)s - 1) s, generate_series(0, 23) h""",
                {"t": start, "n": sensors},
            )


def test_once_no_raw_day_is_left_the_oldest_minute_days_go(db_dsn: str) -> None:
    """Rollups outgrowing the share: after the raw days before today, the 1-minute days go,
    oldest first and never today's; the hourly tier keeps those days."""
    _fill_days(db_dsn, [2, 1, 0], rows=5_000)
    _fill_minutes(db_dsn, [4, 3, 2, 1, 0])
    today = datetime.now(UTC).date()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        before = retention.store_bytes(conn)
        minute = dict(retention.minute_days(conn, today))
        assert sorted(minute) == [today - timedelta(days=d) for d in (4, 3, 2, 1)]
        # room for all but about two and a half days of 1-minute rollups beyond the raw days
        raw = sum(b for _d, b in retention.raw_days(conn, today))
        share = before - raw - int(2.5 * min(minute.values()))
        r = retention.enforce(conn, share, today)
        tiers = [d.tier for d in r.drops]
        assert tiers == ["raw", "raw"] + ["1m"] * (len(tiers) - 2) and tiers.count("1m") >= 2
        assert [d.day for d in r.drops if d.tier == "1m"][:2] == [today - timedelta(days=4), today - timedelta(days=3)]
        assert not r.over and r.store_bytes <= share
        raw_h, minute_h = retention.horizons(conn)
        assert raw_h is not None and minute_h is not None and minute_h.date() >= today - timedelta(days=2)
        assert scalar(db_dsn, "SELECT count(*) FROM metrics_1m WHERE minute < %s", (minute_h,)) == 0
        assert scalar(db_dsn, "SELECT count(DISTINCT hour::date) FROM metrics_1h") == 5  # the hours stay
        logged = {(row[1], row[5]) for row in retention.recent_drops(conn)}
        assert logged == {(d.day, d.tier) for d in r.drops}
        assert retention.drop_totals(conn)["size"][0] == 2  # raw days only
        # nothing before today left but hours: today's minutes stay, and the store is over
        r2 = retention.enforce(conn, 1, today)
        assert r2.over and scalar(db_dsn, "SELECT min(minute)::date FROM metrics_1m") == today


def test_reads_of_metrics_go_on_while_a_day_is_being_dropped(db_dsn: str) -> None:
    """The slow part of a drop (deleting the day's dedupe rows) holds `metrics` against
    writes only; the lock that stops readers is taken at the very end."""
    _fill_days(db_dsn, [1, 0], rows=2_000)
    today = datetime.now(UTC).date()
    midnight = datetime.combine(today, datetime.min.time(), UTC)
    with psycopg.connect(db_dsn) as holder:
        # a row lock on one of the day's dedupe rows stops the drop inside its DELETE
        holder.execute("SELECT 1 FROM processed_events WHERE event_ts < %s LIMIT 1 FOR UPDATE", (midnight,))
        done: list[int] = []

        def drop() -> None:
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                row = conn.execute("SELECT sensorpipe_drop_raw_day(%s, 'size', %s)", (today - timedelta(days=1), today))
                done.append(int(row.fetchone()[0]))  # type: ignore[index]

        t = threading.Thread(target=drop)
        t.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%drop_raw_day%%'"
        )
        wait_until(lambda: scalar(db_dsn, waiting) == 1, 15, "the drop to wait inside its DELETE")
        with psycopg.connect(db_dsn, autocommit=True) as reader:
            reader.execute("SET lock_timeout = '2s'")
            row = reader.execute("SELECT count(*) FROM metrics WHERE ts >= %s", (midnight,)).fetchone()
            assert row == (2_000,)
        holder.rollback()
    t.join(30)
    assert done and _days_kept(db_dsn) == [0]


def test_minute_rollups_of_an_existing_store_move_into_day_partitions(platform: Platform) -> None:
    assert platform.pg is not None
    dsn = platform.pg.create_database(f"m_{uuid.uuid4().hex[:12]}")
    migrate(dsn, upto=9)
    _fill_minutes(dsn, [100, 1], sensors=3, partitioned=False)
    assert migrate(dsn) == [m.version for m in available() if m.version > 9]  # 010 and every later one
    today = datetime.now(UTC).date()
    with psycopg.connect(dsn, autocommit=True) as conn:
        days = [d for d, _b in retention.minute_days(conn, today)]
        assert days[0] == today - timedelta(days=100) and today - timedelta(days=1) in days
        assert scalar(dsn, "SELECT count(*) FROM metrics_1m") == 2 * 3 * 1440
        # the consumer's upsert still finds the key; time retention drops the old day as a partition
        conn.execute(
            "INSERT INTO metrics_1m VALUES ('s-0', %s, 1, 5, 5, 5) ON CONFLICT (sensor_id, minute)"
            " DO UPDATE SET count = metrics_1m.count + 1",
            (datetime.combine(today - timedelta(days=1), datetime.min.time(), UTC),),
        )
        assert scalar(dsn, "SELECT max(count) FROM metrics_1m") == 61
        conn.execute("SELECT sensorpipe_apply_tiered_retention(%s, 7, 90, 730)", (today,))
        assert retention.minute_days(conn, today)[0][0] == today - timedelta(days=1)
        assert scalar(dsn, "SELECT count(*) FROM retention_log WHERE tier = '1m' AND reason = 'time'") == 1


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
    svc = _consumer(topics, db_dsn)
    try:
        _step_until(svc, lambda: scalar(db_dsn, "SELECT count(*) FROM dead_letters") >= 1)
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
    svc = _consumer(topics, db_dsn, retry_max_s=1.0)
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
        _step_until(svc, lambda: scalar(db_dsn, "SELECT count(*) FROM dead_letters") >= 1)
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
