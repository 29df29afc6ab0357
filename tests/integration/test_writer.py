"""The batch writer against the real database: classification, sensor statistics, rollups."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sensorpipe.storage import summaries, writer
from sensorpipe.storage.arrays import BinaryArray, Float8Array, Int4Array, Int8Array, TimestamptzArray
from sensorpipe.storage.batch import BatchResult, Columns
from sensorpipe.storage.positions import Positions, Ranges
from sensorpipe.storage.writer import BatchWriter

from .helpers import read_side, scalar


def _cols(rows: list[tuple[str, int, float, int, int]], now_us: int) -> Columns:
    """rows: (sensor, seq, value, partition, offset); each gets a fresh event id."""
    c = Columns()
    for sensor, seq, value, part, off in rows:
        c.append(str(uuid.uuid4()), sensor, now_us + off, value, seq, part, off, hash((sensor, seq, value)))
    return c


# A writer claims every batch the same way, whatever its last batch held (a plain insert,
# then on a known id a lookup and ON CONFLICT). The tests that classify rows run after each
# kind of batch, so a claim that came to depend on history would fail one of them.
BEFORE = ["after-new", "after-some-known", "after-replay"]


def _write_before(w: BatchWriter, before: str, now_us: int) -> int:
    """Writes warm-up batches (sensor `warm`, partition 11) of the kind `before` names; returns
    how many rows they stored."""
    warm = _cols([("warm", i, 1.0, 11, 900 + i) for i in range(3)], now_us)
    assert w.write(warm.take([0]), []).stored == 1
    if before == "after-some-known":  # one id of three known
        assert w.write(warm, []).stored == 2
    elif before == "after-replay":  # all known
        assert w.write(warm.take([0]), []).redeliveries == 1
    return 3 if before == "after-some-known" else 1


def test_seq_gaps_and_order_violations_are_counted_across_batches(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    w.write(_cols([("a", 0, 1.0, 0, 0), ("a", 1, 2.0, 0, 1), ("a", 2, 3.0, 0, 2), ("b", 7, 1.0, 1, 0)], now), [])
    # a: 5 skips 3-4 (a gap), then 4 goes backwards (a violation); b: 8 follows 7
    r = w.write(_cols([("a", 5, 4.0, 0, 3), ("a", 4, 5.0, 0, 4), ("b", 8, 2.0, 1, 1)], now), [])
    assert r.stored == 3
    with psycopg.connect(db_dsn) as conn:
        stats = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT sensor_id, events, last_seq, last_value, seq_gaps, order_violations FROM sensor_stats"
            )
        }
    assert stats["a"] == (5, 4, 5.0, 1, 1)
    assert stats["b"] == (2, 8, 2.0, 0, 0)
    # a gap at a batch boundary counts too
    w.write(_cols([("b", 10, 3.0, 1, 2)], now), [])
    assert scalar(db_dsn, "SELECT seq_gaps FROM sensor_stats WHERE sensor_id = 'b'") == 1
    w.close()


def test_replay_duplicates_and_conflicts_are_told_apart(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    first = _cols([("a", 0, 1.0, 0, 0), ("a", 1, 2.0, 0, 1)], now)
    assert w.write(first, []).stored == 2
    replay = w.write(first, [])  # the same offsets again: a consumer restart
    assert (replay.stored, replay.redeliveries, replay.duplicates, replay.conflicts) == (0, 2, 0, 0)
    resent = first.take([0])
    resent.koff[0] = 9  # the producer sent it again: another offset
    changed = first.take([1])
    changed.koff[0], changed.chash[0] = 10, 12345  # same id, other content
    both = Columns()
    for part in (resent, changed):
        both.append(
            part.event_id[0],
            part.sensor_id[0],
            part.ts_us[0],
            part.value[0],
            part.seq[0],
            part.kpart[0],
            part.koff[0],
            part.chash[0],
        )
    r = w.write(both, [])
    assert (r.stored, r.duplicates, r.conflicts) == (0, 1, 1)
    assert scalar(db_dsn, "SELECT count(*) FROM event_conflicts") == 1
    assert (
        scalar(db_dsn, "SELECT sum(duplicates) + sum(redeliveries) * 100 + sum(conflicts) * 10000 FROM ingest_counters")
        == 1 + 200 + 10000
    )
    assert scalar(db_dsn, "SELECT count(*) FROM metrics") == 2
    # The batch with the duplicate and the conflict is redelivered (a crash after the database
    # commit): both copies are redeliveries now; neither counts a second time.
    again = w.write(both, [])
    assert (again.stored, again.duplicates, again.conflicts, again.redeliveries) == (0, 0, 0, 2)
    assert scalar(db_dsn, "SELECT count(*) FROM event_conflicts") == 1
    assert scalar(db_dsn, "SELECT sum(duplicates) * 10 + sum(conflicts) FROM ingest_counters") == 11
    w.close()


@pytest.mark.parametrize("before", BEFORE)
def test_a_batch_mixing_new_rows_redeliveries_a_duplicate_and_a_conflict(db_dsn: str, before: str) -> None:
    """The new rows among them are exactly the ones stored, wherever they sit in the batch
    (the lookup returns redeliveries as positions per partition, the others one by one), and
    whatever the writer's last batch was: the plain insert fails, is undone, and the ids are
    looked up and the rest claimed."""
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    stored = _cols([(f"s{i % 3}", i, float(i), i % 2, 100 + i) for i in range(10)], now)
    assert w.write(stored, []).stored == 10
    warm = _write_before(w, before, now)
    fresh = _cols([(f"s{i % 3}", 50 + i, float(i), i % 2, 200 + i) for i in range(6)], now)
    mixed = Columns()
    picks: list[tuple[Columns, int, int, int]] = [  # (source, row, offset, hash); -1 keeps the source's
        (fresh, 0, -1, -1),
        (stored, 2, -1, -1),  # redelivered, partition 0
        (stored, 3, -1, -1),  # redelivered, partition 1
        (fresh, 1, -1, -1),
        (stored, 4, 300, -1),  # the same event at another offset: a duplicate
        (fresh, 2, -1, -1),
        (stored, 5, 301, 777),  # the same id with other content: a conflict
        (stored, 7, -1, -1),  # redelivered, partition 1
        (fresh, 3, -1, -1),
    ]
    for src, i, off, h in picks:
        mixed.append(
            src.event_id[i],
            src.sensor_id[i],
            src.ts_us[i],
            src.value[i],
            src.seq[i],
            src.kpart[i],
            src.koff[i] if off < 0 else off,
            src.chash[i] if h < 0 else h,
        )
    r = w.write(mixed, [])
    assert (r.stored, r.redeliveries, r.duplicates, r.conflicts) == (4, 3, 1, 1)
    with psycopg.connect(db_dsn) as conn:
        ids = {row[0] for row in conn.execute("SELECT event_id FROM metrics WHERE sensor_id <> 'warm'")}
        assert conn.execute("SELECT count(*) FROM processed_events").fetchone() == (14 + warm,)
        # the undone insert left no row of its own: each stored id once, in both tables
        assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM metrics").fetchone() == (14 + warm,) * 2
    assert ids == set(stored.event_id) | set(fresh.event_id[:4])
    w.close()


def test_duplicate_pair_in_a_redelivered_batch_counts_once(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    batch = _cols([("a", 0, 1.0, 3, 100), ("a", 1, 2.0, 3, 101)], now)
    # the producer re-sent the first event: the same id and content at a later offset
    batch.append(batch.event_id[0], "a", batch.ts_us[0], 1.0, 0, 3, 102, batch.chash[0])
    r = w.write(batch, [])
    assert (r.stored, r.duplicates, r.redeliveries) == (2, 1, 0)
    for _ in range(2):  # redelivered twice: only the redelivery count moves
        r = w.write(batch, [])
        assert (r.stored, r.duplicates, r.redeliveries) == (0, 0, 3)  # the copy is one too
    counters = "SELECT sum(duplicates)::int, sum(redeliveries)::int FROM ingest_counters"
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute(counters).fetchone() == (1, 6)
        kinds = conn.execute("SELECT kafka_offset, kind FROM ignored_deliveries").fetchall()
    assert kinds == [(102, "duplicate")]
    w.close()


def test_rollups_equal_raw_aggregates(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6) // 60_000_000 * 60_000_000
    rows = [(f"s{i % 7}", i // 7, float((i * 37) % 101) - 50, i % 12, i) for i in range(3000)]
    for k in range(0, 3000, 500):  # spread over minutes and batches
        chunk = _cols(rows[k : k + 500], now + k * 90_000)
        w.write(chunk, [])
    with psycopg.connect(db_dsn) as conn:
        raw = conn.execute(
            "SELECT sensor_id, date_trunc('minute', ts), count(*), sum(value), min(value), max(value)"
            " FROM metrics GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        rolled = conn.execute("SELECT sensor_id, minute, count, sum, min, max FROM metrics_1m ORDER BY 1, 2").fetchall()
        raw_p = conn.execute(
            "SELECT kafka_partition, date_trunc('minute', ts), count(*), sum(value), min(value), max(value)"
            " FROM metrics GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        rolled_p = conn.execute(
            "SELECT kafka_partition, minute, count, sum, min, max FROM metrics_1m_partition ORDER BY 1, 2"
        ).fetchall()
    assert len(raw) > 7
    assert raw == rolled
    assert len(raw_p) > 12
    assert raw_p == rolled_p  # the all-sensor rollup, per partition, too
    w.close()


def test_hourly_rollup_and_summaries_across_hour_edges(db_dsn: str) -> None:
    """The hourly rollup equals the raw rows per partition and hour, and a summary whose range
    cuts hours mid-way (whole hours from it, the ends from the minute rollup) equals the raw
    rows whose minute starts inside the range."""
    w = BatchWriter(db_dsn, retention_days=7)
    base = int(time.time() // 3600 - 4) * 3600 * 1_000_000  # a whole hour, four hours ago
    rows = [(f"s{i % 5}", i // 5, float((i * 37) % 101) - 50, i % 12, i) for i in range(1200)]
    for k in range(0, 1200, 100):  # twelve batches, 17 minutes apart: 3 h 7 min in all
        w.write(_cols(rows[k : k + 100], base + k // 100 * 17 * 60_000_000), [])
    # a sensor seen only after the ranges below: it is in sensor_stats, in none of them
    w.write(_cols([("late", 0, 1.0, 3, 5000)], base + 200 * 60_000_000), [])
    w.close()
    with psycopg.connect(db_dsn) as conn:
        raw_h = conn.execute(
            "SELECT kafka_partition, date_bin('1 hour', ts, timestamptz 'epoch'), count(*), sum(value),"
            " min(value), max(value) FROM metrics GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        rolled_h = conn.execute(
            "SELECT kafka_partition, hour, count, sum, min, max FROM metrics_1h_partition ORDER BY 1, 2"
        ).fetchall()
        assert len({r[1] for r in raw_h}) == 4
        assert [(*r[:3], pytest.approx(r[3]), *r[4:]) for r in rolled_h] == raw_h
        t0 = datetime.fromtimestamp(base / 1e6, UTC)
        for lo, hi in [
            (t0 + timedelta(minutes=20), t0 + timedelta(hours=2, minutes=40)),  # two ends and a whole hour
            (t0 + timedelta(minutes=10, seconds=30), t0 + timedelta(minutes=50)),  # inside one hour
            (t0, t0 + timedelta(hours=3)),  # whole hours only
            (t0 + timedelta(minutes=40), t0 + timedelta(hours=1, minutes=30)),  # across one edge, no whole hour
        ]:
            got = read_side(db_dsn, lambda c, lo=lo, hi=hi: summaries.summary(c, None, lo, hi))
            want = conn.execute(
                "SELECT count(*), min(value), max(value), avg(value), count(DISTINCT sensor_id) FROM metrics"
                " WHERE date_trunc('minute', ts) >= %s AND date_trunc('minute', ts) < %s",
                (lo, hi),
            ).fetchone()
            assert want is not None and want[0] > 0
            assert (got.events, got.min, got.max, got.sensors) == (*want[:3], want[4]), (lo, hi)
            assert got.avg == pytest.approx(want[3])


def test_binary_arrays_reach_the_server_exactly(db_dsn: str) -> None:
    """The writer's numeric columns travel in PostgreSQL's binary array format; the server
    reads back every edge value as sent (int limits, signed zero, the largest accepted value,
    the smallest subnormal) and empty arrays as empty."""
    ints = [-(2**63), -1, 0, 1, 2**63 - 1]
    int4s = [-(2**31), 0, 11, 2**31 - 1]
    floats = [-0.0, 0.1, -1e15, 1e15, 5e-324, 20.000000000000004]
    unix_us = [0, 1_795_000_000_123_456, -1, 946_684_800_000_000]
    with psycopg.connect(db_dsn) as conn:
        BinaryArray.adapt(conn)
        row = conn.execute(
            "SELECT %s::int8[], %s::int4[], %s::float8[], %s::int8[], %s::float8[], pg_typeof(%s)::text",
            (Int8Array(ints), Int4Array(int4s), Float8Array(floats), Int8Array([]), Float8Array([]), Int8Array([1])),
        ).fetchone()
        times = conn.execute("SELECT %s::timestamptz[]", (TimestamptzArray(unix_us),)).fetchone()
    assert row is not None
    assert row[0] == ints
    assert row[1] == int4s
    assert [x.hex() for x in row[2]] == [x.hex() for x in floats]  # bit-exact, -0.0 included
    assert row[3] == [] and row[4] == []
    assert row[5] == "bigint[]"  # typed by the dumper, not guessed by the server
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert times is not None
    assert times[0] == [epoch + timedelta(microseconds=us) for us in unix_us]  # to the microsecond
    with pytest.raises(OverflowError):
        Int8Array([2**63])  # never truncated into a wrong id or offset
    with pytest.raises(OverflowError):
        Int4Array([2**31])


@pytest.mark.parametrize("lead", ["new", "stored"])
def test_an_id_claimed_by_a_concurrent_writer_is_a_duplicate_not_a_second_row(db_dsn: str, lead: str) -> None:
    """Writer A claims an id and holds its transaction open; writer B, given the same event
    from another offset, waits on A's claim and, once A commits, counts a duplicate and
    stores nothing. B waits in its plain insert when its batch leads with a new id, and in
    its ON CONFLICT claim when it leads with a stored one (the insert fails at once, and the
    lookup cannot see A's uncommitted row)."""
    a, b = BatchWriter(db_dsn, retention_days=7), BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    old = _cols([("w", 0, 1.0, 2, 5)], now)
    assert b.write(old, []).stored == 1
    mine = _cols([("x", 0, 1.0, 0, 10), ("x", 1, 2.0, 0, 11)], now)
    theirs = old if lead == "stored" else Columns()  # a redelivery of `old`, first in the batch
    theirs.append(mine.event_id[1], "x", mine.ts_us[1], 2.0, 1, 1, 20, mine.chash[1])  # the producer's re-send
    extra = _cols([("y", 0, 3.0, 1, 21)], now)
    theirs.append(extra.event_id[0], "y", extra.ts_us[0], 3.0, 0, 1, 21, extra.chash[0])
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        assert release.wait(30)

    results: dict[str, BatchResult] = {}

    def write_a() -> None:
        results["a"] = a.write(mine, [], before_commit=hold)

    def write_b() -> None:
        results["b"] = b.write(theirs, [])

    ta = threading.Thread(target=write_a)
    ta.start()
    assert holding.wait(30)
    tb = threading.Thread(target=write_b)
    tb.start()
    tb.join(1.0)
    assert tb.is_alive()  # B waits on A's uncommitted claim of the shared id
    release.set()
    ta.join(30)
    tb.join(30)
    assert results["a"].stored == 2
    rb = results["b"]
    assert (rb.stored, rb.duplicates, rb.conflicts, rb.redeliveries) == (1, 1, 0, int(lead == "stored"))
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM metrics WHERE event_id = %s", (mine.event_id[1],)).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM metrics WHERE sensor_id IN ('x', 'y')").fetchone() == (3,)
    a.close()
    b.close()


def test_positions_are_recorded_in_the_parts_transaction_and_ranges_only_grow(db_dsn: str) -> None:
    """A span continues the range that holds or precedes its first offset, or starts its own;
    a span behind a range (a fenced consumer's late batch) never shrinks it; ranges are kept
    per topic id; known positions count as redeliveries; a rolled-back part records nothing."""
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    rows = _cols([("a", i, 1.0, 0, i) for i in range(5)], now)  # partition 0, offsets 0-4
    r = w.write(rows, [], positions=Positions("T", spans={0: (0, 4), 3: (10, 12)}, known={3: 3}))
    assert (r.stored, r.redeliveries) == (5, 3)
    for part, span in ((0, (5, 9)), (0, (20, 25)), (0, (3, 6)), (3, (13, 13))):
        w.write(Columns(), [], positions=Positions("T", spans={part: span}))
    w.write(Columns(), [], positions=Positions("U", spans={1: (0, 100)}))

    def fail() -> None:
        raise RuntimeError("the part fails before its commit")

    with pytest.raises(RuntimeError):
        w.write(Columns(), [], before_commit=fail, positions=Positions("T", spans={0: (26, 40), 7: (0, 9)}))
    with psycopg.connect(db_dsn) as conn:
        got = conn.execute(
            "SELECT topic_id, kafka_partition, first_offset, last_offset FROM processed_ranges ORDER BY 1, 2, 3"
        )
        assert got.fetchall() == [("T", 0, 0, 9), ("T", 0, 20, 25), ("T", 3, 10, 13), ("U", 1, 0, 100)]
        ranges = Ranges()
        ranges.load(conn, "T", [0, 1, 3, 7])
    assert scalar(db_dsn, "SELECT sum(redeliveries) FROM ingest_counters") == 3
    assert [ranges.through(0, off) for off in (0, 9, 10, 19, 20, 25, 26)] == [9, 9, -1, -1, 25, 25, -1]
    assert [ranges.through(3, off) for off in (9, 10, 13, 14)] == [-1, 13, 13, -1]
    assert ranges.through(1, 0) == -1  # recorded under topic id U only
    assert ranges.through(7, 0) == -1  # its part was rolled back
    w.close()


def test_rows_are_stored_in_batch_order(db_dsn: str) -> None:
    """metrics.ingest_id follows the order of the batch (Kafka order within each partition),
    over batches large enough that the server would spill or reorder if it could: per-sensor
    order is proven from it."""
    w = BatchWriter(db_dsn, retention_days=7)
    now = int(time.time() * 1e6)
    rng = random.Random(3)
    batches = []
    for b in range(3):
        rows = [
            (f"s{rng.randrange(500)}", b * 10_000 + i, rng.random(), rng.randrange(12), b * 10_000 + i)
            for i in range(10_000)
        ]
        batches.append(_cols(rows, now))
    for c in batches:
        assert w.write(c, []).stored == 10_000
    with psycopg.connect(db_dsn) as conn:
        got = [r[0] for r in conn.execute("SELECT event_id FROM metrics ORDER BY ingest_id")]
    assert got == [e for c in batches for e in c.event_id]
    w.close()


def test_the_lookup_of_known_ids_probes_the_index_whatever_the_batch_size(db_dsn: str) -> None:
    """A batch's ids are looked up one index probe each, never by hashing processed_events
    whole, even as a custom plan that sees a full batch (what follows a failed claim, after
    which psycopg has forgotten its prepared statements)."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)"
            " SELECT 'bulk-' || i, 0, i, i, now() FROM generate_series(1, 100000) i"
        )
        conn.execute("ANALYZE processed_events")
        ids = _cols([("s", i, 1.0, 0, i) for i in range(20_000)], int(time.time() * 1e6))
        BinaryArray.adapt(conn)
        lit = writer.Literals(ids)
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + writer._KNOWN, {**lit.claim(), "missing": False}, prepare=False)
        )
    assert "Index Scan using processed_events_pkey" in plan or "Index Only Scan" in plan, plan
    assert "Seq Scan on processed_events" not in plan, plan


def test_a_rollup_row_changes_only_by_gaining_events(db_dsn: str) -> None:
    """The rule the API's hour cache relies on: a minute's rollup row changes only when new
    events are stored in it, and then its count goes up by exactly those; a redelivered
    batch, a duplicate at another offset and a conflicting copy leave it as it was."""
    w = BatchWriter(db_dsn, retention_days=7)
    minute = int(time.time() // 60 * 60 * 1e6)
    first = _cols([("r", i, float(i), 0, i) for i in range(5)], minute)

    def row() -> tuple[int, float, float, float]:
        with psycopg.connect(db_dsn) as conn:
            got = conn.execute(
                "SELECT count, sum, min, max FROM metrics_1m WHERE sensor_id = 'r' AND minute = to_timestamp(%s)",
                (minute / 1e6,),
            ).fetchone()
        assert got is not None
        return got

    assert w.write(first, []).stored == 5
    before = row()
    assert before == (5, 10.0, 0.0, 4.0)
    w.write(first, [])  # redelivered whole
    again = first.take([1])
    again.koff[0] = 50  # the same event at another offset: a duplicate
    conflict = first.take([2])
    conflict.koff[0], conflict.chash[0], conflict.value[0] = 51, 999, 1e6  # the same id, other content
    for extra in (again, conflict):
        assert w.write(extra, []).stored == 0
    assert row() == before
    more = _cols([("r", 10 + i, 100.0, 0, 60 + i) for i in range(3)], minute)
    assert w.write(more, []).stored == 3
    assert row() == (8, 310.0, 0.0, 100.0)  # grew by exactly the new events
    w.close()
