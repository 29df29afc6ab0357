"""Compacted days against the real database: the swap, late events, reads across both tiers,
and kills at every point of a compaction (storage.compaction, storage.compacted)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from sensorpipe.contracts.events import row_hash
from sensorpipe.storage import audit, compaction, queries
from sensorpipe.storage.batch import Columns
from sensorpipe.storage.writer import BatchWriter

from .helpers import scalar

pytestmark = pytest.mark.integration

DAY = (datetime.now(UTC) - timedelta(days=3)).date()
_DAY0 = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
_DAY0_US = int(_DAY0.timestamp()) * 1_000_000
_COLS = "sensor_id, event_id, ts, value, seq, kafka_partition, kafka_offset, ingest_id, ingested_at"


def _events(n: int, sensors: int = 3, start_off: int = 0, tag: str = "") -> Columns:
    """n events over the day's hours, with the real content hash; odd values included."""
    c = Columns()
    odd = [-0.0, 5e-324, 1e15, -1e15, 0.1 + 0.2]
    for k in range(n):
        sensor = f"s-{k % sensors}"
        ts = _DAY0_US + k * 997_000_013 % (86_400 * 1_000_000 - 1)  # spread over the day, in no order
        value = odd[k % len(odd)] if k % 7 == 0 else round(20 + k * 0.01, 2)
        eid = str(uuid.uuid4()) if k % 5 else f"id-{tag}{k}-{sensor}"
        c.append(eid, sensor, ts, value, k, k % 12, start_off + k, row_hash(sensor, eid, ts, value, k))
    return c


def _raw(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {_COLS} FROM metrics ORDER BY event_id").fetchall()


def _restored(dsn: str) -> list[tuple[Any, ...]]:
    """Every compacted reading, with every field, restored from the chunks."""
    with psycopg.connect(dsn) as conn:
        return sorted(audit.compacted_rows(conn), key=lambda r: r[1])


def _violations_of(c: Columns) -> int:
    """Per-sensor seq steps back in write order, as the audit counts them."""
    last: dict[str, int] = {}
    n = 0
    for s, q in zip(c.sensor_id, c.seq, strict=True):
        n += s in last and q <= last[s]
        last[s] = q
    return n


def _compact(dsn: str, day: date = DAY) -> compaction.Compacted | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return compaction.compact(conn, day)


def test_a_compacted_day_restores_every_field_and_leaves_no_row(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    assert w.write(_events(600), []).stored == 600
    today = _events(5, tag="today-")
    today.ts_us[:] = [int(datetime.now(UTC).timestamp() * 1e6)] * 5  # another day: stays hot
    assert w.write(today, []).stored == 5
    before = [r for r in _raw(db_dsn) if r[2] < _DAY0 + timedelta(days=1)]
    done = _compact(db_dsn)
    assert done is not None and (done.events, done.part) == (600, 0)
    assert done.chunks == 3 * 24  # one per sensor and hour
    assert _restored(db_dsn) == sorted(before, key=lambda r: r[1])
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == 5
    lo, hi = _DAY0, _DAY0 + timedelta(days=1)
    with psycopg.connect(db_dsn) as conn:
        left = conn.execute("SELECT count(*) FROM processed_events WHERE event_ts >= %s AND event_ts < %s", (lo, hi))
        assert left.fetchone() == (0,)
        assert conn.execute("SELECT day, part, events FROM compacted_days").fetchall() == [(DAY, 0, 600)]
    # nothing left to compact: a second pass finds no rows, and a compaction asked for anyway
    # records nothing
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert compaction.pending_days(conn, DAY + timedelta(days=1)) == []
        assert compaction.compact_day(conn, DAY) is None
        assert conn.execute("SELECT count(*) FROM compacted_days").fetchone() == (1,)
    w.close()


def test_late_duplicate_conflict_and_new_event_for_a_compacted_day(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    first = _events(50)
    w.write(first, [])
    _compact(db_dsn)
    late = first.take([3, 4, 5])
    late.koff[:] = [900, 901, 902]  # re-sent from other offsets
    late.value[1] = late.value[1] + 1  # same id, other content: a conflict
    late.chash[1] = row_hash(late.sensor_id[1], late.event_id[1], late.ts_us[1], late.value[1], late.seq[1])
    late.event_id[2] = "brand-new-late-event"
    late.chash[2] = row_hash(late.sensor_id[2], "brand-new-late-event", late.ts_us[2], late.value[2], late.seq[2])
    r = w.write(late, [])
    assert (r.stored, r.duplicates, r.conflicts) == (1, 1, 1)
    again = w.write(first.take([3]), [])  # the original copy from its own offset: a redelivery
    assert (again.stored, again.redeliveries) == (0, 1)
    # the new one is a row of the compacted day until the next pass folds it into part 1
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == 1
    done = _compact(db_dsn)
    assert done is not None and (done.part, done.events) == (1, 1)
    ids = [r[1] for r in _restored(db_dsn)]
    assert len(ids) == len(set(ids)) == 51
    # and once compacted, the late event is recognised as a duplicate too
    assert w.write(late.take([2]), []).stored == 0
    w.close()


def _pages(dsn: str, sensors: list[str] | None, limit: int) -> list[tuple[Any, ...]]:
    """Every reading of the range, page by page: (timestamp, event_id, sensor_id, value, seq)."""

    async def go() -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        after = None
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            while True:
                page = await queries.readings(
                    conn, sensors, _DAY0 - timedelta(hours=1), _DAY0 + timedelta(days=2), limit, after
                )
                out += [(r["timestamp"], r["event_id"], r["sensor_id"], r["value"], r["seq"]) for r in page]
                if len(page) < limit:
                    return out
                after = (page[-1]["timestamp"], page[-1]["event_id"])

    return asyncio.run(go())


@pytest.mark.parametrize("sensors", [None, ["s-1", "s-2"]])
def test_pages_across_the_boundary_match_the_same_data_uncompacted(db_dsn: str, sensors: list[str] | None) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    w.write(_events(400), [])
    expected = _pages(db_dsn, sensors, 37)
    assert len(expected) == (400 if sensors is None else 266)
    _compact(db_dsn)
    late = _events(30, start_off=5000)  # rows of the compacted day again, beside its chunks
    late.event_id[:] = [f"late-{i}" for i in range(30)]
    late.chash[:] = [
        row_hash(s, e, t, v, q)
        for s, e, t, v, q in zip(late.sensor_id, late.event_id, late.ts_us, late.value, late.seq, strict=True)
    ]
    w.write(late, [])
    with_late = _pages(db_dsn, sensors, 37)
    want = sorted(
        expected
        + [
            (datetime.fromtimestamp(t / 1e6, UTC), e, s, v, q)
            for t, e, s, v, q in zip(late.ts_us, late.event_id, late.sensor_id, late.value, late.seq, strict=True)
            if sensors is None or s in sensors
        ]
    )
    assert with_late == want
    w.close()


def test_an_event_is_found_by_id_in_either_tier(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    ev = _events(300)
    w.write(ev, [])
    _compact(db_dsn)

    async def find(eid: str) -> dict[str, Any] | None:
        async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
            return await queries.event(conn, eid)

    for i in (0, 1, 150, 299):
        got = asyncio.run(find(ev.event_id[i]))
        assert got is not None
        assert (got["sensor_id"], got["seq"], got["kafka_offset"]) == (ev.sensor_id[i], ev.seq[i], ev.koff[i])
        assert str(got["value"]) == str(ev.value[i])
    assert asyncio.run(find("never-stored")) is None
    w.close()


_KILLER = """
import os, signal, sys
from datetime import date
import psycopg
from sensorpipe.storage import compaction
point = sys.argv[2]
def step(name):
    if name == point:
        os.kill(os.getpid(), signal.SIGKILL)
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    compaction.compact_day(conn, date.fromisoformat(sys.argv[3]), step)
"""


@pytest.mark.parametrize("point", ["locked", "chunks", "directory", "finished", "committed"])
def test_a_kill_at_any_point_leaves_rows_or_chunks_never_both_or_neither(db_dsn: str, point: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    ev = _events(500)
    w.write(ev, [])
    w.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, db_dsn, point, DAY.isoformat()], env=env, timeout=120, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    rows = scalar(db_dsn, "SELECT count(*) FROM metrics")
    chunked = len(_restored(db_dsn))
    assert (rows, chunked) == ((0, 500) if point == "committed" else (500, 0))
    with psycopg.connect(db_dsn) as conn:
        assert sorted(audit.stored_ids(conn)) == sorted(ev.event_id)
        assert audit.duplicate_rows(conn)["metrics"] == 0
        assert audit.order_violations(conn) == _violations_of(ev)
    if point != "committed":  # the next pass finishes the job
        _compact(db_dsn)
        assert (scalar(db_dsn, "SELECT count(*) FROM metrics"), len(_restored(db_dsn))) == (0, 500)


def test_concurrent_writers_store_a_late_event_at_most_once_across_tiers(db_dsn: str) -> None:
    """Writers re-sending the day's events (and new ones) while the day is compacted: every
    id is stored once, in one tier or the other."""
    base = _events(3000)
    BatchWriter(db_dsn, retention_days=7).write(base, [])
    extra = _events(300, start_off=10_000)
    extra.event_id[:] = [f"extra-{i}" for i in range(300)]
    extra.chash[:] = [
        row_hash(s, e, t, v, q)
        for s, e, t, v, q in zip(extra.sensor_id, extra.event_id, extra.ts_us, extra.value, extra.seq, strict=True)
    ]
    errors: list[BaseException] = []

    def resend(k: int) -> None:
        # Each writer owns one Kafka partition, as a consumer does: writers that share one update
        # its counters row in no fixed order and can deadlock (the consumer then retries).
        w = BatchWriter(db_dsn, retention_days=7)
        try:
            for j in range(0, 3000, 150):
                batch = base.take(list(range(j, j + 150)))
                batch.koff[:] = [o + 100_000 * (k + 1) for o in batch.koff]
                batch.kpart[:] = [k] * len(batch)
                w.write(batch, [])
                late = extra.take(list(range((j // 10) % 300, (j // 10) % 300 + 15)))
                late.kpart[:] = [k] * len(late)
                w.write(late, [])
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            w.close()

    threads = [threading.Thread(target=resend, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    _compact(db_dsn)
    for t in threads:
        t.join()
    assert not errors
    _compact(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        ids = list(audit.stored_ids(conn))
        assert audit.duplicate_rows(conn)["metrics"] == 0
    assert len(ids) == len(set(ids))
    written = {extra.event_id[i] for j in range(0, 3000, 150) for i in range((j // 10) % 300, (j // 10) % 300 + 15)}
    assert set(ids) == set(base.event_id) | written


def test_the_compactor_keeps_today_and_yesterday_as_rows(db_dsn: str) -> None:
    from functools import partial

    from sensorpipe.compactor.service import Compactor

    w = BatchWriter(db_dsn, retention_days=7)
    for back in (0, 1, 2, 3):
        ev = _events(20, tag=f"back{back}-")
        ev.ts_us[:] = [t + (3 - back) * 86_400_000_000 for t in ev.ts_us]  # DAY + (3 - back) days
        assert w.write(ev, []).stored == 20
    w.close()
    now = (_DAY0 + timedelta(days=3, hours=12)).timestamp()  # the clock stands on DAY + 3
    trims: list[int] = []
    c = Compactor(partial(psycopg.connect, db_dsn), lambda: now, grace_days=1, trim=lambda: trims.append(1))
    done = c.run_pass()
    assert len(trims) == 2  # memory handed back after each day
    assert sorted(d.day for d in done) == [DAY, DAY + timedelta(days=1)]
    assert (c.totals.days, c.totals.events, c.totals.backlog) == (2, 40, 0)
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == 40
    assert c.run_pass() == []  # nothing closed is left


@pytest.mark.parametrize("sensors", [None, ["s-1"]])
def test_a_summary_over_a_compacted_range_has_its_first_and_last_reading(
    db_dsn: str, sensors: list[str] | None
) -> None:
    from sensorpipe.storage import summaries

    w = BatchWriter(db_dsn, retention_days=7)
    ev = _events(300)
    w.write(ev, [])
    w.close()
    # a range that cuts hours of the day at both ends, so bounding chunks are read
    start, end = _DAY0 + timedelta(hours=3, minutes=17), _DAY0 + timedelta(hours=20, minutes=41)
    inside = [
        t
        for t, s in zip(ev.ts_us, ev.sensor_id, strict=True)
        if start.timestamp() * 1e6 <= t < end.timestamp() * 1e6 and (sensors is None or s in sensors)
    ]

    async def summary() -> summaries.Summary:
        async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
            return await summaries.summary(conn, sensors, start, end)

    hot = asyncio.run(summary())
    _compact(db_dsn)
    cold = asyncio.run(summary())
    first, last = (datetime.fromtimestamp(min(inside) / 1e6, UTC), datetime.fromtimestamp(max(inside) / 1e6, UTC))
    assert (hot.first, hot.last) == (first, last)
    assert (cold.first, cold.last) == (first, last)
    assert (cold.events, cold.min, cold.max) == (hot.events, hot.min, hot.max)  # from the rollups
    assert hot.p50 is not None and cold.p50 is None  # percentiles are sampled from rows only


def test_retention_drops_a_compacted_day_whole(db_dsn: str) -> None:
    from sensorpipe.storage import retention

    w = BatchWriter(db_dsn, retention_days=7)
    w.write(_events(200), [])
    w.close()
    _compact(db_dsn)
    today = datetime.now(UTC).date()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        days = [d for d, _b in retention.raw_days(conn, today)]
        assert days == [DAY]
        row = conn.execute("SELECT sensorpipe_drop_raw_day(%s, 'size', %s)", (DAY, today)).fetchone()
        assert row == (200,)  # the compacted events count as the day's rows
        gone = conn.execute(
            "SELECT to_regclass(%s), to_regclass(%s), to_regclass(%s), (SELECT count(*) FROM compacted_days)",
            (f"metrics_{DAY:%Y%m%d}", f"metrics_chunks_{DAY:%Y%m%d}", f"chunk_ids_{DAY:%Y%m%d}"),
        ).fetchone()
        assert gone == (None, None, None, 0)
        assert conn.execute("SELECT rows FROM retention_log").fetchall() == [(200,)]
        assert audit.any_compacted(conn) is False
