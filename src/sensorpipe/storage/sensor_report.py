"""One sensor's record over a range of event time, for its page: the `seq` gaps and order
violations among its stored rows (in the order they were stored, ingest_id), the conflicts
recorded against its events, and its newest events. Every list is bounded by the caller's
limit, and the range by the route (raw rows only: days that were compacted are not read)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sensorpipe.storage.queries import Row

# Each stored row against the row of the sensor stored just before it (ingest_id): a gap when
# its seq is more than one past, a violation when it is not past at all. The consumer counts
# both the same way (sensor_stats), across all time; here they are found, with their times,
# in the range (the range's first row has nothing before it to compare with).
_SEQ_EVENTS = """
SELECT ts, seq, prev_seq, event_id FROM (
    SELECT ts, seq, event_id, lag(seq) OVER (ORDER BY ingest_id) AS prev_seq
    FROM metrics WHERE sensor_id = %(sensor)s AND ts >= %(start)s AND ts < %(end)s
) stored
WHERE seq > prev_seq + 1 OR seq <= prev_seq
ORDER BY ts DESC LIMIT %(limit)s"""

_CONFLICTS = """
SELECT c.event_id, c.kafka_partition, c.kafka_offset, c.seen_at FROM event_conflicts c
WHERE c.event_id IN (SELECT event_id FROM metrics WHERE sensor_id = %(sensor)s AND ts >= %(start)s AND ts < %(end)s)
ORDER BY c.seen_at DESC, c.id DESC LIMIT %(limit)s"""

_LAST = """
SELECT ts, event_id, value, seq, kafka_partition, kafka_offset, ingested_at FROM metrics
WHERE sensor_id = %(sensor)s AND ts >= %(start)s AND ts < %(end)s
ORDER BY ts DESC, event_id DESC LIMIT %(limit)s"""


# Each sensor's mean per minute from the minute rollup, as the JSON object the API returns:
# {sensor: [mean or null for each minute from `first` to `last`]}. Built by the server, as
# turning thousands of rows into Python objects costs the API more than the query.
_SPARKS = """
SELECT coalesce(json_object_agg(sensor_id, line), '{}')::text FROM (
    SELECT i.sensor_id, json_agg(r.sum / r.count ORDER BY g.minute) AS line
    FROM unnest(%(ids)s::text[]) AS i(sensor_id)
    CROSS JOIN generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 minute') AS g(minute)
    LEFT JOIN metrics_1m r ON r.sensor_id = i.sensor_id AND r.minute = g.minute
        AND r.sensor_id = ANY(%(ids)s) AND r.minute >= %(first)s AND r.minute <= %(last)s
    GROUP BY i.sensor_id
) lines"""


async def sparklines_json(conn: psycopg.AsyncConnection[Any], ids: list[str], first: datetime, last: datetime) -> str:
    """The JSON text of each sensor's minute means from minute `first` to `last`, both included."""
    async with conn.cursor() as cur:
        await cur.execute(_SPARKS, {"ids": ids, "first": first, "last": last})
        row = await cur.fetchone()
    return str(row[0]) if row else "{}"


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def seq_events(
    conn: psycopg.AsyncConnection[Any], sensor: str, start: datetime, end: datetime, limit: int
) -> tuple[list[Row], list[Row]]:
    """(gaps, violations), newest first: rows with ts, seq, prev_seq and event_id."""
    rows = await _rows(conn, _SEQ_EVENTS, {"sensor": sensor, "start": start, "end": end, "limit": 2 * limit})
    gaps = [r for r in rows if r["seq"] > r["prev_seq"] + 1]
    violations = [r for r in rows if r["seq"] <= r["prev_seq"]]
    return gaps[:limit], violations[:limit]


async def conflicts(
    conn: psycopg.AsyncConnection[Any], sensor: str, start: datetime, end: datetime, limit: int
) -> list[Row]:
    return await _rows(conn, _CONFLICTS, {"sensor": sensor, "start": start, "end": end, "limit": limit})


async def last_events(
    conn: psycopg.AsyncConnection[Any], sensor: str, start: datetime, end: datetime, limit: int
) -> list[Row]:
    return await _rows(conn, _LAST, {"sensor": sensor, "start": start, "end": end, "limit": limit})
