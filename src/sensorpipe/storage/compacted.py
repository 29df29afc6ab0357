"""Reading the compacted tier (migration 012): readings, single events and known ids.

Readers see one store: each function here returns what the same question asked of rows
returns, so callers merge it with the hot rows' answer. A chunk is visible exactly when its
day's rows are gone (storage.compaction), so no reading is in both tiers at once for a
statement's snapshot, and one statement reads each tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import psycopg

from sensorpipe.contracts.events import row_hash
from sensorpipe.storage.chunks import Chunk, unpack
from sensorpipe.storage.compaction import HOUR_US, day_bounds, hour_floor, id_hashes, micros_to_dt, split_hash, us

Row = dict[str, Any]
# A reading as it sorts: (ts in us, event_id, sensor_id, value, seq).
Reading = tuple[int, str, str, float, int]

_SENSOR_CHUNKS = """
SELECT sensor_id, data FROM metrics_chunks
WHERE sensor_id = ANY(%(sensors)s) AND hour >= %(lo)s AND hour < %(hi)s AND last_ts >= %(from)s
"""
_ALL_CHUNKS = (
    "SELECT sensor_id, data FROM metrics_chunks WHERE hour >= %(lo)s AND hour < %(hi)s AND last_ts >= %(from)s"
)
_FIRST_HOUR = {
    True: "SELECT min(hour) FROM metrics_chunks "
    "WHERE sensor_id = ANY(%(sensors)s) AND hour >= %(lo)s AND hour < %(hi)s",
    False: "SELECT min(hour) FROM metrics_chunks WHERE hour >= %(lo)s AND hour < %(hi)s",
}
# The chunks of (sensor, hour) pairs: where a late event's id would be if it is compacted.
_AT = """
SELECT c.sensor_id, c.data FROM metrics_chunks c
JOIN unnest(%s::text[], %s::timestamptz[]) AS u(sensor_id, hour) ON c.sensor_id = u.sensor_id AND c.hour = u.hour
"""
_PARTS = "SELECT day, part, bucket_bits FROM compacted_days ORDER BY day, part"
_BUCKETS = """
SELECT d.day, d.part, d.hashes, d.chunks FROM chunk_ids d
JOIN unnest(%s::date[], %s::int4[], %s::int4[]) AS u(day, part, bucket)
  ON d.day = u.day AND d.part = u.part AND d.bucket = u.bucket
"""
_BY_NUMBER = """
SELECT sensor_id, data FROM metrics_chunks WHERE hour >= %s AND hour < %s AND chunk_no = ANY(%s)
"""


@dataclass(frozen=True)
class Stored:
    """What the compacted tier holds for an event id."""

    sensor_id: str
    kafka_partition: int
    kafka_offset: int
    content_hash: int
    ts: datetime
    value: float
    seq: int
    ingested: datetime


def _stored(chunk: Chunk, i: int, sensor: str, event_id: str) -> Stored:
    ts, value, seq = int(chunk.ts[i]), float(chunk.value[i]), int(chunk.seq[i])
    return Stored(
        sensor,
        int(chunk.kpart[i]),
        int(chunk.koff[i]),
        row_hash(sensor, event_id, ts, value, seq),
        micros_to_dt(ts),
        value,
        seq,
        micros_to_dt(int(chunk.ingested[i])),
    )


# -- readings -----------------------------------------------------------------------------------
def _page(chunk: Chunk, start: int, end: int, after: tuple[int, str] | None, sensor: str) -> list[Reading]:
    """The chunk's readings in [start, end) after the cursor, as sortable tuples."""
    lo = int(np.searchsorted(chunk.ts, max(start, after[0] if after else start), side="left"))
    hi = int(np.searchsorted(chunk.ts, end, side="left"))
    if lo >= hi:
        return []
    index = np.arange(lo, hi)
    ids = chunk.ids(index)
    out: list[Reading] = []
    for k, i in enumerate(index.tolist()):
        t = int(chunk.ts[i])
        if after is not None and (t, ids[k]) <= after:
            continue
        out.append((t, ids[k], sensor, float(chunk.value[i]), int(chunk.seq[i])))
    return out


def merge_page(tuples: Iterable[Reading], limit: int) -> list[Row]:
    best = sorted(tuples)[:limit]
    return [
        {"sensor_id": s, "event_id": e, "timestamp": micros_to_dt(t), "value": v, "seq": q} for t, e, s, v, q in best
    ]


async def readings(
    conn: psycopg.AsyncConnection[Any],
    sensors: list[str] | None,
    start: datetime,
    end: datetime,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Row]:
    """The first `limit` compacted readings in (ts, event_id) order inside [start, end) after
    the cursor. Hours are read in order until the page is full: a reading in a later hour
    sorts after every reading of an earlier one."""
    cursor = (us(after[0]), after[1]) if after else None
    lo_us = max(us(start), cursor[0] if cursor else 0)
    end_us = us(end)
    params: dict[str, Any] = {"sensors": sensors, "lo": micros_to_dt(hour_floor(lo_us)), "hi": end}
    row = await (await conn.execute(_FIRST_HOUR[bool(sensors)], params)).fetchone()
    if row is None or row[0] is None:
        return []
    hour = us(row[0])
    found: list[Reading] = []
    while hour < end_us and len(found) < limit:
        nxt = hour + HOUR_US
        p = {"sensors": sensors, "lo": micros_to_dt(hour), "hi": micros_to_dt(nxt), "from": micros_to_dt(lo_us)}
        cur = await conn.execute(_SENSOR_CHUNKS if sensors else _ALL_CHUNKS, p)
        async for sensor, data in cur:
            found += _page(Chunk(data), lo_us, end_us, cursor, sensor)
        hour = nxt
    return merge_page(found, limit)


# -- one event ----------------------------------------------------------------------------------
def _find(chunk: Chunk, sensor: str, event_id: str) -> Stored | None:
    ids = chunk.ids()
    try:
        i = ids.index(event_id)
    except ValueError:
        return None
    return _stored(chunk, i, sensor, event_id)


def _bucket_keys(
    parts: list[tuple[date, int, int]], event_id: str
) -> tuple[list[Any], list[Any], list[Any], dict[tuple[date, int], int]]:
    """For each compacted part: its bucket for the id, and the 32-bit key to look for."""
    h = id_hashes([event_id])
    days: list[Any] = []
    nums: list[Any] = []
    buckets: list[Any] = []
    keys: dict[tuple[date, int], int] = {}
    for day, part, bits in parts:
        b, k = split_hash(h, bits)
        days.append(day)
        nums.append(part)
        buckets.append(int(b[0]))
        keys[(day, part)] = int(k[0])
    return days, nums, buckets, keys


async def event(conn: psycopg.AsyncConnection[Any], event_id: str) -> tuple[Stored, date] | None:
    """The compacted event with this id and its day, found through the id directory."""
    parts = [(d, p, b) for d, p, b in await (await conn.execute(_PARTS)).fetchall()]
    if not parts:
        return None
    days, nums, buckets, keys = _bucket_keys(parts, event_id)
    rows = await (await conn.execute(_BUCKETS, (days, nums, buckets))).fetchall()
    for day, part, hashes, refs in rows:
        candidates = _matches(hashes, refs, keys[(day, part)])
        if not candidates:
            continue
        found = await (await conn.execute(_BY_NUMBER, (*day_bounds(day), candidates))).fetchall()
        for sensor, data in found:
            stored = _find(Chunk(data), sensor, event_id)
            if stored is not None:
                return stored, day
    return None


def _matches(hashes: bytes, refs: bytes, key: int) -> list[int]:
    keys = unpack(hashes, np.uint32)
    lo, hi = np.searchsorted(keys, key, side="left"), np.searchsorted(keys, key, side="right")
    return sorted({int(x) for x in unpack(refs, np.int32)[lo:hi]})


# -- the writer's check of late events ----------------------------------------------------------
def known(
    conn: psycopg.Connection[Any], sensor_ids: list[str], ts_us: list[int], event_ids: list[str]
) -> dict[str, Stored]:
    """Of these events (by sensor and time), those whose id is in the chunks of their sensor
    and hour, with what the chunk holds for it."""
    wanted: dict[tuple[str, int], set[str]] = {}
    for s, t, e in zip(sensor_ids, ts_us, event_ids, strict=True):
        wanted.setdefault((s, hour_floor(t)), set()).add(e)
    pairs = list(wanted)
    rows = conn.execute(_AT, ([s for s, _ in pairs], [micros_to_dt(h) for _, h in pairs])).fetchall()
    by_sensor: dict[str, set[str]] = {}
    for (s, _h), wanted_ids in wanted.items():
        by_sensor.setdefault(s, set()).update(wanted_ids)
    out: dict[str, Stored] = {}
    for sensor, data in rows:
        chunk = Chunk(data)
        ids = chunk.ids()
        want = by_sensor[sensor]
        for i, eid in enumerate(ids):
            if eid in want and eid not in out:
                out[eid] = _stored(chunk, i, sensor, eid)
    return out


# -- summaries ----------------------------------------------------------------------------------
# The chunks that hold readings in [start, end); the data only of those that reach past either
# end (their readings are cut at the bound), so whole chunks cost no read of their columns.
_SPAN = {
    True: """
        SELECT first_ts, last_ts, CASE WHEN first_ts < %(start)s OR last_ts >= %(end)s THEN data END
        FROM metrics_chunks
        WHERE sensor_id = ANY(%(sensors)s) AND hour >= %(lo)s AND hour < %(end)s
          AND last_ts >= %(start)s AND first_ts < %(end)s""",
    False: """
        SELECT first_ts, last_ts, CASE WHEN first_ts < %(start)s OR last_ts >= %(end)s THEN data END
        FROM metrics_chunks
        WHERE hour >= %(lo)s AND hour < %(end)s AND last_ts >= %(start)s AND first_ts < %(end)s""",
}


async def first_last(
    conn: psycopg.AsyncConnection[Any], sensors: list[str] | None, start: datetime, end: datetime
) -> tuple[datetime | None, datetime | None]:
    """The first and last compacted reading times in [start, end) (None, None: there are none)."""
    lo_us = us(start)
    params = {"sensors": sensors, "start": start, "end": end, "lo": micros_to_dt(hour_floor(lo_us))}
    firsts: list[int] = []
    lasts: list[int] = []
    async for first, last, data in await conn.execute(_SPAN[bool(sensors)], params):
        if data is None:
            firsts.append(us(first))
            lasts.append(us(last))
            continue
        ts = Chunk(data).ts
        inside = ts[(ts >= lo_us) & (ts < us(end))]
        if len(inside):
            firsts.append(int(inside[0]))
            lasts.append(int(inside[-1]))
    if not firsts:
        return None, None
    return micros_to_dt(min(firsts)), micros_to_dt(max(lasts))
