"""Compaction: closed days of raw rows rewritten as chunks (migration 012, storage.chunks).

Contract of `compact_day`: one transaction swaps the day from rows to chunks. Before its
commit every reader sees the rows and no chunk of this part; after it, the chunks and none of
the rows, and the day's dedupe rows are gone with them. Killed at any point before the
commit, nothing of it remains; after it, only `reclaim` is left to do, and it may run any
number of times. Days are compacted only when they no longer receive writes in normal
operation (before the grace period); a row that still arrives for a compacted day is stored
as a row and compacted into a further part of its hours by a later pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import xxhash
from psycopg import sql
from psycopg.types.numeric import Int8

from sensorpipe.storage import chunks
from sensorpipe.storage.arrays import PG_EPOCH_US, BinaryArray, Int4Array, Int8Array

# The day's rows, one row per (sensor, hour), each column packed by the server into one bytea:
# the binary send form of each value, concatenated, which numpy reads in one call per column
# (a timestamptz is sent as microseconds since 2000-01-01). The aggregates take no ORDER BY:
# one aggregation feeds each input row to all of its aggregates in turn, so the columns stay
# aligned, and the rows are put in chunk order afterwards (`_rows`); with the statement kept
# serial (no partial aggregates combined from workers). Sorting in every aggregate cost the
# server more than the rest of the read.
_SERIAL = "SET LOCAL max_parallel_workers_per_gather = 0"
_SENSOR_HOURS = """
SELECT sensor_id, date_bin('1 hour', ts, timestamptz 'epoch') AS hour,
       string_agg(event_id, E'\\n'), string_agg(timestamptz_send(ts), ''::bytea),
       string_agg(float8send(value), ''::bytea), string_agg(int8send(seq), ''::bytea),
       string_agg(int4send(kafka_partition), ''::bytea), string_agg(int8send(kafka_offset), ''::bytea),
       string_agg(int8send(ingest_id), ''::bytea), string_agg(timestamptz_send(ingested_at), ''::bytea)
FROM metrics WHERE ts >= %(lo)s AND ts < %(hi)s
GROUP BY 1, 2
ORDER BY 1, 2
"""
_BEGIN = "SELECT part, first_chunk FROM sensorpipe_begin_compaction(%s)"
_ENSURE = "SELECT sensorpipe_ensure_chunk_day(%s)"
_FINISH = "SELECT sensorpipe_finish_compaction(%s, %s, %s, %s, %s)"
_PENDING = "SELECT d FROM sensorpipe_days_with_rows(%s) AS d"
_PARTS = "SELECT count(*), coalesce(sum(events), 0)::int8 FROM compacted_days"
_COUNT = "SELECT count(*) FROM metrics WHERE ts >= %(lo)s AND ts < %(hi)s"
# The directory's keys of the part being written, staged in the server (migration 012); the
# table is the compaction's alone (one at a time, under the partitions' lock).
_CLEAR_STAGED = "TRUNCATE compaction_ids"
_STAGE = """
INSERT INTO compaction_ids (bucket, key, chunk_no) SELECT unnest(%s::int4[]), unnest(%s::int8[]), unnest(%s::int4[])
"""
_STAGED_BUCKETS = """
SELECT bucket, string_agg(int8send(key), ''::bytea ORDER BY key, chunk_no),
       string_agg(int4send(chunk_no), ''::bytea ORDER BY key, chunk_no)
FROM compaction_ids GROUP BY bucket ORDER BY bucket
"""
GROUPS_PER_FETCH = 128  # sensor-hours held at once
_COPY_CHUNKS = (
    "COPY metrics_chunks (sensor_id, hour, part, chunk_no, events, first_ts, last_ts, data) FROM STDIN (FORMAT binary)"
)
_COPY_IDS = "COPY chunk_ids (day, part, bucket, hashes, chunks) FROM STDIN (FORMAT binary)"
_CHUNK_TYPES = ["text", "timestamptz", "int4", "int4", "int4", "timestamptz", "timestamptz", "bytea"]
_ID_TYPES = ["date", "int4", "int4", "bytea", "bytea"]
_RECLAIM_NAME = "metrics_{:%Y%m%d}"
# The columns of _SENSOR_HOURS after the ids, as the server sends them (big-endian).
_PACKED: list[np.dtype[Any]] = [
    np.dtype(">i8"),
    np.dtype(">f8"),
    np.dtype(">i8"),
    np.dtype(">i4"),
    np.dtype(">i8"),
    np.dtype(">i8"),
    np.dtype(">i8"),
]

# A directory bucket holds about this many ids: one bucket is read to find an id.
BUCKET_IDS = 8_192
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000

Step = Callable[[str], None]  # called at each named point of a compaction (the kill tests)


@dataclass(frozen=True)
class Compacted:
    day: date
    part: int
    events: int
    chunks: int
    bytes: int  # chunk data and directory, as encoded


def micros_to_dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def hour_floor(ts_us: int) -> int:
    """The start of the UTC hour holding `ts_us`, in microseconds."""
    return ts_us - ts_us % HOUR_US


def day_bounds(day: date) -> tuple[datetime, datetime]:
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return lo, lo + timedelta(days=1)


def pending_days(conn: psycopg.Connection[Any], before: date) -> list[date]:
    """Days before `before` that hold raw rows: never compacted, or with late rows."""
    return [r[0] for r in conn.execute(_PENDING, (before,)).fetchall()]


def compacted(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(day parts, events) held in the compacted tier."""
    row = conn.execute(_PARTS).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def id_hashes(ids: list[str]) -> np.ndarray:
    """XXH3-64 of each id, as uint64: the directory's key."""
    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def bucket_bits(n: int) -> int:
    return max(0, math.ceil(math.log2(n / BUCKET_IDS))) if n > BUCKET_IDS else 0


def split_hash(h: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket, the 32 bits that follow the bucket's) of each hash."""
    bucket = (h >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(len(h), np.int64)
    key = ((h << np.uint64(bits)) >> np.uint64(32)).astype(np.uint32)
    return bucket, key


def compact_day(conn: psycopg.Connection[Any], day: date, step: Step | None = None) -> Compacted | None:
    """Swap one day's raw rows for chunks, in one transaction; None if it has no partition or
    no rows.

    Memory is bounded by GROUPS_PER_FETCH sensor-hours and one directory bucket, whatever the
    day holds: chunks are written as their sensor-hours arrive, and the ids' directory keys are
    staged in the server (`compaction_ids`) and read back one bucket at a time."""
    mark = step or (lambda _name: None)
    BinaryArray.adapt(conn)
    with conn.transaction():
        conn.execute(_ENSURE, (day,))
    with conn.transaction():
        opened = conn.execute(_BEGIN, (day,)).fetchone()
        if opened is None:
            return None
        part, first_chunk = int(opened[0]), int(opened[1])
        mark("locked")
        lo, hi = day_bounds(day)
        row = conn.execute(_COUNT, {"lo": lo, "hi": hi}).fetchone()
        if row is None or row[0] == 0:
            return None  # nothing to compact (the transaction changed nothing)
        bits = bucket_bits(int(row[0]))
        conn.execute(_CLEAR_STAGED)
        tally = _write_chunks(conn, lo, hi, _Part(day, part, first_chunk, bits))
        mark("chunks")
        tally.bytes += _write_directory(conn, day, part)
        mark("directory")
        conn.execute(_FINISH, (day, part, Int8(tally.events), tally.chunks, bits))
        mark("finished")
    mark("committed")
    return Compacted(day, part, tally.events, tally.chunks, tally.bytes)


@dataclass(frozen=True)
class _Part:
    day: date
    part: int
    first_chunk: int
    bits: int


@dataclass
class _Tally:
    events: int = 0
    chunks: int = 0
    bytes: int = 0


def _write_chunks(conn: psycopg.Connection[Any], lo: datetime, hi: datetime, p: _Part) -> _Tally:
    """COPY the day's chunks, a few sensor-hours at a time, and stage their ids' keys."""
    tally = _Tally()
    with conn.cursor(name="compaction_rows") as cur:
        conn.execute(_SERIAL)
        cur.execute(_SENSOR_HOURS, {"lo": lo, "hi": hi})
        while batch := cur.fetchmany(GROUPS_PER_FETCH):
            groups = [(sensor, us(hour), _rows(ids, *cols)) for sensor, hour, ids, *cols in batch]
            _copy_groups(conn, groups, p, tally)
    return tally


def _copy_groups(
    conn: psycopg.Connection[Any], groups: list[tuple[str, int, chunks.Rows]], p: _Part, t: _Tally
) -> None:
    buckets: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    with conn.cursor() as cur, cur.copy(_COPY_CHUNKS) as copy:
        copy.set_types(_CHUNK_TYPES)
        for sensor, hour, rows in groups:
            data = chunks.encode(rows)
            no = p.first_chunk + t.chunks
            first, last = micros_to_dt(int(rows.ts[0])), micros_to_dt(int(rows.ts[-1]))
            copy.write_row((sensor, micros_to_dt(hour), p.part, no, len(rows), first, last, data))
            bucket, key = split_hash(id_hashes(rows.event_id), p.bits)
            buckets.append(bucket)
            keys.append(key)
            owners.append(np.full(len(rows), no, np.int32))
            t.events += len(rows)
            t.chunks += 1
            t.bytes += len(data)
    conn.execute(
        _STAGE,
        (Int4Array(np.concatenate(buckets)), Int8Array(np.concatenate(keys)), Int4Array(np.concatenate(owners))),
    )


def _write_directory(conn: psycopg.Connection[Any], day: date, part: int) -> int:
    """The staged keys, one bucket at a time: sorted, under pcodec, into chunk_ids."""
    size = 0
    with conn.cursor(name="compaction_ids") as cur:
        cur.execute(_STAGED_BUCKETS)
        while batch := cur.fetchmany(64):
            with conn.cursor() as w, w.copy(_COPY_IDS) as copy:
                copy.set_types(_ID_TYPES)
                for bucket, packed_keys, packed_owners in batch:
                    k = np.frombuffer(packed_keys, dtype=">i8").astype(np.uint32)
                    o = np.frombuffer(packed_owners, dtype=">i4").astype(np.int32)
                    hashes, refs = chunks.pack(k, np.uint32), chunks.pack(o, np.int32)
                    size += len(hashes) + len(refs)
                    copy.write_row((day, part, int(bucket), hashes, refs))
    return size


def us(ts: datetime) -> int:
    """A time as microseconds since the epoch."""
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _rows(ids: str, *packed: bytes) -> chunks.Rows:
    """One sensor-hour's columns as sent, in chunk order: (ts, event_id), ids compared by code
    point (the C collation, as readers compare them)."""
    ts, value, seq, kpart, koff, ingest, ingested = (
        np.frombuffer(b, dtype=t).astype(t.newbyteorder("=")) for b, t in zip(packed, _PACKED, strict=True)
    )
    ts += PG_EPOCH_US
    ingested += PG_EPOCH_US
    return chunks.Rows(ids.split("\n"), ts, value, seq, kpart, koff, ingest, ingested).ordered()


def compact(conn: psycopg.Connection[Any], day: date) -> Compacted | None:
    """`compact_day`, then `reclaim` of the day it compacted (an autocommit connection)."""
    result = compact_day(conn, day)
    if result is not None:
        reclaim(conn, day)
    return result


def reclaim(conn: psycopg.Connection[Any], day: date) -> None:
    """Give the disk back the compacted day's emptied raw partition: its heap is truncated by
    VACUUM and its indexes rebuilt empty. Needs an autocommit connection; safe to repeat."""
    name = sql.Identifier(_RECLAIM_NAME.format(day))
    conn.execute(sql.SQL("VACUUM {}").format(name))
    conn.execute(sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(name))
