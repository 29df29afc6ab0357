"""The read side: every query the API runs, as static parameterised SQL.

Routes never build SQL. Where a filter is optional, there is one static statement per
combination (rather than `param IS NULL OR ...`), so each gets a plan that uses its index.
Every connection of the API's pool runs under a `statement_timeout`.

The API awaits these on its event loop (`psycopg.AsyncConnection`): a route then needs no
hand-off to a worker thread, and no worker thread competes with the loop for the GIL.
`counters` is also read by sync callers (the audit, the API's pipeline monitor thread), so it
takes a sync connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sensorpipe.storage import compacted

Row = dict[str, Any]

# The API's connections name themselves so (pg_stat_activity.application_name), so that
# their statements can be told apart from the consumer's.
APPLICATION_NAME = "sensorpipe-api"

# -- readings ---------------------------------------------------------------------------------
_READINGS = {
    (False, False): """
        SELECT sensor_id, event_id, ts AS timestamp, value, seq FROM metrics
        WHERE ts >= %(start)s AND ts < %(end)s
        ORDER BY ts, event_id COLLATE "C" LIMIT %(limit)s""",
    (False, True): """
        SELECT sensor_id, event_id, ts AS timestamp, value, seq FROM metrics
        WHERE ts >= %(start)s AND ts < %(end)s AND (ts, event_id COLLATE "C") > (%(cts)s, %(ceid)s)
        ORDER BY ts, event_id COLLATE "C" LIMIT %(limit)s""",
    (True, False): """
        SELECT sensor_id, event_id, ts AS timestamp, value, seq FROM metrics
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(start)s AND ts < %(end)s
        ORDER BY ts, event_id COLLATE "C" LIMIT %(limit)s""",
    (True, True): """
        SELECT sensor_id, event_id, ts AS timestamp, value, seq FROM metrics
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(start)s AND ts < %(end)s
          AND (ts, event_id COLLATE "C") > (%(cts)s, %(ceid)s)
        ORDER BY ts, event_id COLLATE "C" LIMIT %(limit)s""",
}


async def readings(
    conn: psycopg.AsyncConnection[Any],
    sensors: list[str] | None,
    start: datetime,
    end: datetime,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Row]:
    """Raw readings in (ts, event_id) order, from rows and compacted chunks alike; `after` is
    the keyset cursor (exclusive). Ids compare byte by byte (the C collation), the order a
    chunk keeps, whatever the database's collation."""
    sql = _READINGS[(bool(sensors), after is not None)]
    params: dict[str, Any] = {"sensors": sensors, "start": start, "end": end, "limit": limit}
    if after is not None:
        params["cts"], params["ceid"] = after
    async with conn.cursor(row_factory=dict_row) as cur:
        # Never prepared: a generic plan cannot see which sensor or hour is asked, and picks the
        # time index, reading every sensor's rows of the range to keep one sensor's.
        await cur.execute(sql, params, prepare=False)
        hot = await cur.fetchall()
    cold = await compacted.readings(conn, sensors, start, end, limit, after)
    if not cold:
        return hot
    return sorted(hot + cold, key=lambda r: (r["timestamp"], r["event_id"]))[:limit]


# -- tiers ------------------------------------------------------------------------------------
# Raw rows, 1-minute and 1-hour rollups are kept for different numbers of days (migration
# 009). A read uses the finest tier that covers its range and whose grain divides its bucket,
# and says which (`resolution`).
RAW, MINUTE, HOUR = "raw", "1m", "1h"


class TierError(ValueError):
    """No tier both covers the range and divides the bucket."""


@dataclass(frozen=True)
class Horizons:
    """Where retention left raw rows and 1-minute rollups starting (None: by their days)."""

    raw: datetime | None = None
    minute: datetime | None = None


@dataclass(frozen=True)
class Tiers:
    raw_days: int = 7
    minute_days: int = 90
    hour_days: int = 730

    def starts(self, now: datetime, horizons: Horizons | None = None) -> dict[str, datetime]:
        """Where each tier's data begins: UTC midnights, as retention cuts them; from the
        horizons when size retention moved them past the days (migrations 009, 010)."""
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
        days = {RAW: self.raw_days, MINUTE: self.minute_days, HOUR: self.hour_days}
        out = {tier: midnight - timedelta(days=d) for tier, d in days.items()}
        h = horizons or Horizons()
        for tier, at in ((RAW, h.raw), (MINUTE, h.minute)):
            if at is not None:
                out[tier] = max(out[tier], at)
        return out

    def for_aggregate(self, start: datetime, bucket_s: int, now: datetime, horizons: Horizons | None = None) -> str:
        """Buckets of whole hours beyond one hour come from hours (the same sums, far fewer
        rows); whole minutes from minutes while they are kept; shorter ones from raw rows."""
        since = self.starts(now, horizons)
        if bucket_s % 3600 == 0 and bucket_s > 3600:
            return HOUR
        if bucket_s % 60 == 0:
            if start >= since[MINUTE]:
                return MINUTE
            if bucket_s % 3600 == 0:
                return HOUR
            raise TierError(
                f"1-minute rollups are kept from {since[MINUTE]:%Y-%m-%d %H:%M} UTC (at most {self.minute_days} days, "
                "fewer when the disk budget is short): over older ranges use a bucket of whole hours"
            )
        if start >= since[RAW]:
            return RAW
        raise TierError(
            f"raw readings are kept from {since[RAW]:%Y-%m-%d %H:%M} UTC (at most {self.raw_days} days, fewer when "
            "the disk budget is short): over older ranges use whole minutes"
        )

    def for_summary(self, start: datetime, now: datetime, horizons: Horizons | None = None) -> str:
        return MINUTE if start >= self.starts(now, horizons)[MINUTE] else HOUR


# -- aggregates ---------------------------------------------------------------------------------
# Buckets of a minute or more come from a rollup tier (start and end then count in whole
# minutes or hours); shorter buckets are computed from raw rows. Without sensors, one series
# across all sensors is returned (sensor_id NULL), from the tier's per-partition rollup.
def _agg_rollup_sql(per_sensor: str, per_partition: str, grain: str) -> dict[bool, str]:
    # composed once from the table and column names below; no runtime input reaches this text
    return {
        True: f"""
        SELECT sensor_id, date_bin(%(bucket)s, {grain}, timestamptz 'epoch') AS bucket,
               sum(count)::bigint AS count, min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS avg
        FROM {per_sensor}
        WHERE sensor_id = ANY(%(sensors)s) AND {grain} >= %(start)s AND {grain} < %(end)s
        GROUP BY 1, 2 ORDER BY 2, 1""",  # noqa: S608
        False: f"""
        SELECT NULL::text AS sensor_id, date_bin(%(bucket)s, {grain}, timestamptz 'epoch') AS bucket,
               sum(count)::bigint AS count, min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS avg
        FROM {per_partition}
        WHERE {grain} >= %(start)s AND {grain} < %(end)s
        GROUP BY 2 ORDER BY 2""",  # noqa: S608
    }


_AGG_ROLLUP = _agg_rollup_sql("metrics_1m", "metrics_1m_partition", "minute")
_AGG_HOURS = _agg_rollup_sql("metrics_1h", "metrics_1h_partition", "hour")
# A bucket of exactly one minute is the rollup's own grain: the rows are the buckets, read by
# an index-only scan with no regrouping (migration 005). Same rows and values as the grouped
# statement: a minute's row is its only member.
_AGG_SENSOR_MINUTES = """
        SELECT sensor_id, minute AS bucket, count, min, max, sum / count AS avg
        FROM metrics_1m
        WHERE sensor_id = ANY(%(sensors)s) AND minute >= %(start)s AND minute < %(end)s
        ORDER BY minute, sensor_id"""

_AGG_RAW = {
    True: """
        SELECT sensor_id, date_bin(%(bucket)s, ts, timestamptz 'epoch') AS bucket,
               count(*) AS count, min(value) AS min, max(value) AS max, avg(value) AS avg
        FROM metrics
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(start)s AND ts < %(end)s
        GROUP BY 1, 2 ORDER BY 2, 1""",
    False: """
        SELECT NULL::text AS sensor_id, date_bin(%(bucket)s, ts, timestamptz 'epoch') AS bucket,
               count(*) AS count, min(value) AS min, max(value) AS max, avg(value) AS avg
        FROM metrics
        WHERE ts >= %(start)s AND ts < %(end)s
        GROUP BY 2 ORDER BY 2""",
}


# The same statements, wrapped so PostgreSQL returns the rows as one JSON array.
def _as_json_array(sql: str) -> bytes:
    # composed once from the static statements above; no runtime input reaches this text
    return f"SELECT coalesce(json_agg(x), '[]')::text FROM ({sql}) x".encode()  # noqa: S608


_AGG_JSON = {
    (tier, with_sensors): _as_json_array(table[with_sensors])
    for tier, table in ((MINUTE, _AGG_ROLLUP), (HOUR, _AGG_HOURS), (RAW, _AGG_RAW))
    for with_sensors in (True, False)
}
_SOURCE = {RAW: "metrics", MINUTE: "metrics_1m", HOUR: "metrics_1h"}
_AGG_SENSOR_MINUTES_JSON = _as_json_array(_AGG_SENSOR_MINUTES)


async def aggregate_json(
    conn: psycopg.AsyncConnection[Any],
    sensors: list[str] | None,
    start: datetime,
    end: datetime,
    bucket_s: int,
    resolution: str,
) -> tuple[bytes, str]:
    """count, min, max and avg per bucket (and sensor) from the `resolution` tier, as one JSON
    array built by PostgreSQL, so the API sends the rows on without touching each in Python.
    Returns (json, source table)."""
    minutes = resolution == MINUTE and bucket_s == 60 and sensors
    sql = _AGG_SENSOR_MINUTES_JSON if minutes else _AGG_JSON[(resolution, bool(sensors))]
    params = {"sensors": sensors, "start": start, "end": end, "bucket": timedelta(seconds=bucket_s)}
    row = await (await conn.execute(sql, params)).fetchone()
    return (row[0] if row else "[]").encode(), _SOURCE[resolution]


# -- one sensor's minutes, by the hour --------------------------------------------------------
# For the API's cache of whole hours (api.hours). A rollup row only changes by gaining events
# (its count goes up) or by retention deleting whole days, so an hour of one sensor whose
# (rows, events) are unchanged holds exactly the same rows and values: that pair is the
# hour's fingerprint. Reading the fingerprints is an index-only scan of the covering key.
_SENSOR_HOURS = """
        SELECT date_bin('1 hour', minute, timestamptz 'epoch') AS hour, count(*) AS n, sum(count)::bigint AS events
        FROM metrics_1m
        WHERE sensor_id = %(sensor)s AND minute >= %(start)s AND minute < %(end)s
        GROUP BY 1 ORDER BY 1"""
# The given whole hours, each rendered as its buckets' JSON objects in order (a bucket divides
# an hour, so no bucket spans two), with each bucket's start (epoch seconds) and the
# fingerprint of the rows they were computed from, in the same snapshot. Each hour is its own
# index range scan (LATERAL). Minutes are the rollup's own rows: one scan, no regrouping,
# which is cheaper than the general statement (docs/decisions/007-read-paths.md).
_HOURS_MINUTES = """
            SELECT sensor_id, minute AS bucket, count, min, max, sum / count AS avg
            FROM metrics_1m
            WHERE sensor_id = %(sensor)s AND minute >= h.hour AND minute < h.hour + interval '1 hour'"""
_HOURS_BUCKETS = """
            SELECT sensor_id, date_bin(%(bucket)s, minute, timestamptz 'epoch') AS bucket,
                   sum(count)::bigint AS count, min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS avg
            FROM metrics_1m
            WHERE sensor_id = %(sensor)s AND minute >= h.hour AND minute < h.hour + interval '1 hour'
            GROUP BY 1, 2"""


def _hours_json_sql(buckets: str) -> str:
    # composed once from the static statements above; no runtime input reaches this text
    return f"""
        SELECT h.hour, f.n, f.events, x.rows, x.starts
        FROM unnest(%(hours)s::timestamptz[]) AS h(hour)
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, sum(count)::bigint AS events
            FROM metrics_1m
            WHERE sensor_id = %(sensor)s AND minute >= h.hour AND minute < h.hour + interval '1 hour'
        ) f
        CROSS JOIN LATERAL (
            SELECT array_agg(row_to_json(b)::text ORDER BY b.bucket) AS rows,
                   array_agg(extract(epoch FROM b.bucket)::bigint ORDER BY b.bucket) AS starts
            FROM ({buckets}) b
        ) x
        WHERE f.n > 0
        ORDER BY h.hour"""  # noqa: S608


_HOURS_JSON = {True: _hours_json_sql(_HOURS_MINUTES), False: _hours_json_sql(_HOURS_BUCKETS)}


async def sensor_hours(
    conn: psycopg.AsyncConnection[Any], sensor: str, start: datetime, end: datetime
) -> list[tuple[datetime, int, int]]:
    """(hour, rows, events) of each hour of `sensor` with rollup rows in [start, end)."""
    rows = await (await conn.execute(_SENSOR_HOURS, {"sensor": sensor, "start": start, "end": end})).fetchall()
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


async def sensor_hours_json(
    conn: psycopg.AsyncConnection[Any], sensor: str, hours: list[datetime], bucket_s: int = 60
) -> list[tuple[datetime, int, int, list[str], list[int]]]:
    """(hour, rows, events, the JSON object of each bucket, each bucket's start in epoch
    seconds) for each of the whole `hours` with rows; `bucket_s` must divide an hour into
    whole minutes."""
    params = {"sensor": sensor, "hours": hours, "bucket": timedelta(seconds=bucket_s)}
    rows = await (await conn.execute(_HOURS_JSON[bucket_s == 60], params)).fetchall()
    return [(r[0], int(r[1]), int(r[2]), r[3], r[4]) for r in rows]


# -- sensors ----------------------------------------------------------------------------------
SENSOR_SORTS = {
    "sensor_id": "sensor_id",
    "events": "events",
    "last_seen": "updated_at",
    "last_value": "last_value",
    "seq_gaps": "seq_gaps",
    "order_violations": "order_violations",
}
# A sensor's usual interval is the mean time between its stored batches since it was first
# seen; `quiet_s` how long it has sent nothing; `quiet_ratio` the two compared (the fleet's
# worst-first order), with DEFAULT_INTERVAL_S where the interval is unknown.
DEFAULT_INTERVAL_S = 10.0
# A sensor is late past LATE_FACTOR usual intervals plus LATE_GRACE_S, silent past
# SILENT_FACTOR plus SILENT_GRACE_S: the graces cover batching and a little consumer lag.
LATE_FACTOR, LATE_GRACE_S = 3, 5.0
SILENT_FACTOR, SILENT_GRACE_S = 10, 15.0
# In seconds as double precision (date_part): extract() gives numeric, whose slower arithmetic
# the fleet's worst-first order would pay for every sensor (decision 014).
INTERVAL_SQL = "CASE WHEN events > 1 THEN greatest(date_part('epoch', updated_at - first_seen), 0) / (events - 1) END"
QUIET_SQL = "date_part('epoch', now() - updated_at)"  # now(): one instant for the whole statement
_SENSOR_COLS = f"""sensor_id, events, last_value, last_ts, last_seq, seq_gaps, order_violations,
                  updated_at AS last_seen, {INTERVAL_SQL} AS interval_s, {QUIET_SQL} AS quiet_s"""
_QUIET_RATIO = f"{QUIET_SQL} / greatest(coalesce({INTERVAL_SQL}, {DEFAULT_INTERVAL_S}), 0.05)"


def _quiet_list_sql(desc: bool, with_query: bool) -> str:
    """Sensors by quiet time against their usual interval (worst first with `desc`): one page,
    as a ratio against the clock has no stable keyset."""
    where = "WHERE strpos(sensor_id, %(q)s) > 0" if with_query else ""
    order = "DESC" if desc else "ASC"
    return f"SELECT {_SENSOR_COLS} FROM sensor_stats {where} ORDER BY {_QUIET_RATIO} {order}, sensor_id LIMIT %(limit)s"  # noqa: S608


def _sensor_list_sql(sort: str, desc: bool, with_cursor: bool, with_query: bool) -> str:
    if sort == "quiet":
        return _quiet_list_sql(desc, with_query)
    col = SENSOR_SORTS[sort]  # a whitelisted column name, never user text
    op, order = ("<", "DESC") if desc else (">", "ASC")
    where = []
    if with_query:
        where.append("strpos(sensor_id, %(q)s) > 0")
    if with_cursor:
        where.append(f"({col}, sensor_id) {op} (%(cval)s, %(cid)s)")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_SENSOR_COLS} FROM sensor_stats {clause} ORDER BY {col} {order}, sensor_id {order} LIMIT %(limit)s"  # noqa: S608


async def sensors(
    conn: psycopg.AsyncConnection[Any], q: str | None, sort: str, desc: bool, limit: int, after: tuple[Any, str] | None
) -> list[Row]:
    sql = _sensor_list_sql(sort, desc, after is not None, bool(q))
    params: dict[str, Any] = {"q": q, "limit": limit}
    if after is not None:
        params["cval"], params["cid"] = after
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def sensor(conn: psycopg.AsyncConnection[Any], sensor_id: str) -> Row | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_SENSOR_COLS} FROM sensor_stats WHERE sensor_id = %s".encode(),  # noqa: S608
            (sensor_id,),
        )
        return await cur.fetchone()


async def event(conn: psycopg.AsyncConnection[Any], event_id: str) -> Row | None:
    """The stored event with this id: its row, or else its compacted reading."""
    row = await _hot_event(conn, event_id)
    if row is not None:
        return row
    found = await compacted.event(conn, event_id)
    if found is None:
        return None
    s, _day = found
    return {
        "event_id": event_id,
        "kafka_partition": s.kafka_partition,
        "kafka_offset": s.kafka_offset,
        "processed_at": s.ingested,
        "sensor_id": s.sensor_id,
        "ts": s.ts,
        "value": s.value,
        "seq": s.seq,
        "ingest_id": None,
    }


IGNORED_MAX = 100

_IGNORED = """
SELECT kafka_partition, kafka_offset, kind, seen_at FROM ignored_deliveries
WHERE event_id = %s ORDER BY seen_at DESC, kafka_partition, kafka_offset LIMIT %s
"""


async def ignored_copies(conn: psycopg.AsyncConnection[Any], event_id: str) -> list[Row]:
    """The newest copies of this id that were not stored (duplicates, conflicts), at most
    IGNORED_MAX; kept for the dedupe window."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_IGNORED, (event_id, IGNORED_MAX))
        return await cur.fetchall()


async def _hot_event(conn: psycopg.AsyncConnection[Any], event_id: str) -> Row | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT p.event_id, p.kafka_partition, p.kafka_offset, p.processed_at,
                      m.sensor_id, m.ts, m.value, m.seq, m.ingest_id
               FROM processed_events p
               LEFT JOIN metrics m ON m.event_id = p.event_id AND m.ts = p.event_ts
               WHERE p.event_id = %s""",
            (event_id,),
        )
        return await cur.fetchone()


async def ping(conn: psycopg.AsyncConnection[Any]) -> bool:
    return await (await conn.execute("SELECT 1")).fetchone() == (1,)
