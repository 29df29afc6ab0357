"""The read side's summaries: totals from the rollups, first and last event times, value
percentiles from raw rows (exact or sampled), and the ingest counters. Static parameterised
SQL, like `storage.queries`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sensorpipe.storage import compacted, queries
from sensorpipe.storage.queries import MINUTE, Row

# -- summary ----------------------------------------------------------------------------------
# Sums over every sensor read the per-partition rollups: whole hours of the range from the
# hourly one (12 rows an hour, migration 006), the partial hours at its two ends from the
# minute one; see `hour_split`. With sensors, the per-sensor rollup. Distinct sensors are
# probed per sensor in the rollup's index, not counted with DISTINCT over millions of rows.
# Every statement below is composed once from these static texts; no runtime input reaches them.
# The totals of every summary statement, over rollup rows (count, sum, min, max).
_TOTALS = """coalesce(sum(count), 0)::bigint AS count, min(min) AS min, max(max) AS max,
               sum(sum) / nullif(sum(count), 0) AS avg"""
_SUMMARY_ROLLUP = {
    True: f"""
        SELECT {_TOTALS}, count(DISTINCT sensor_id) AS sensors
        FROM metrics_1m WHERE sensor_id = ANY(%(sensors)s) AND minute >= %(start)s AND minute < %(end)s""",  # noqa: S608
    False: f"""
        SELECT {_TOTALS},
               CASE WHEN %(end)s >= (SELECT max(last_ts) FROM sensor_stats)
                    -- the range reaches the newest reading: a sensor is in it iff its last one is
                    THEN (SELECT count(*) FROM sensor_stats WHERE last_ts >= %(start)s)
                    -- else one index probe per sensor (LIMIT 1 keeps it a probe: an EXISTS
                    -- becomes a semi-join that hashes every minute row in the range)
                    ELSE (SELECT count(*) FROM sensor_stats s CROSS JOIN LATERAL (
                        SELECT 1 FROM metrics_1m m
                        WHERE m.sensor_id = s.sensor_id AND m.minute >= %(start)s AND m.minute < %(end)s
                        LIMIT 1) m)
               END AS sensors
        FROM (SELECT count, sum, min, max FROM metrics_1h_partition WHERE hour >= %(h0)s AND hour < %(h1)s
              UNION ALL
              SELECT count, sum, min, max FROM metrics_1m_partition WHERE minute >= %(start)s AND minute < %(m0)s
              UNION ALL
              SELECT count, sum, min, max FROM metrics_1m_partition WHERE minute >= %(m1)s AND minute < %(end)s
             ) r""",  # noqa: S608
}


# Ranges older than the 1-minute rollups read only hours: an hour counts when it starts in the
# range, as a minute does at the finer resolution.
_SUMMARY_HOURS = {
    True: f"""
        SELECT {_TOTALS}, count(DISTINCT sensor_id) AS sensors
        FROM metrics_1h WHERE sensor_id = ANY(%(sensors)s) AND hour >= %(start)s AND hour < %(end)s""",  # noqa: S608
    False: f"""
        SELECT {_TOTALS},
               (SELECT count(*) FROM sensor_stats s CROSS JOIN LATERAL (
                   SELECT 1 FROM metrics_1h m
                   WHERE m.sensor_id = s.sensor_id AND m.hour >= %(start)s AND m.hour < %(end)s
                   LIMIT 1) m) AS sensors
        FROM metrics_1h_partition WHERE hour >= %(start)s AND hour < %(end)s""",  # noqa: S608
}


def hour_split(start: datetime, end: datetime) -> dict[str, datetime]:
    """[h0, h1): the whole hours inside [start, end); [start, m0) and [m1, end): the rest.

    A rollup row counts when its bucket starts inside the range, as everywhere else: an hour
    is whole when all of its minutes would count. Without a whole hour, the minutes cover the
    range alone and the hours' range is empty.
    """
    h0 = datetime.fromtimestamp(math.ceil(start.timestamp() / 3600) * 3600, UTC)
    h1 = datetime.fromtimestamp(math.floor(end.timestamp() / 3600) * 3600, UTC)
    if h0 >= h1:
        return {"h0": end, "h1": end, "m0": end, "m1": end}
    return {"h0": h0, "h1": h1, "m0": h0, "m1": h1}


_FIRST_LAST = {
    True: """
        SELECT (SELECT min(ts) FROM metrics WHERE sensor_id = ANY(%(sensors)s)
                  AND ts >= %(start)s AND ts < %(end)s) AS first,
               (SELECT max(ts) FROM metrics WHERE sensor_id = ANY(%(sensors)s)
                  AND ts >= %(start)s AND ts < %(end)s) AS last""",
    False: """
        SELECT (SELECT min(ts) FROM metrics WHERE ts >= %(start)s AND ts < %(end)s) AS first,
               (SELECT max(ts) FROM metrics WHERE ts >= %(start)s AND ts < %(end)s) AS last""",
}
# Percentiles read raw values. Up to SAMPLE_ROWS matching rows they are exact; beyond, they
# are estimated from a block sample (TABLESAMPLE SYSTEM) of about SAMPLE_ROWS rows, with a
# fixed seed so that the same data gives the same answer. A block holds readings of one
# moment, so the spread comes from how many moments are sampled more than from the row count;
# docs/decisions/004-summary-percentile-sample.md has the measurement behind SAMPLE_ROWS.
SAMPLE_ROWS = 5_000
_PCT_EXACT = {
    True: """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95
        FROM metrics WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(start)s AND ts < %(end)s""",
    False: """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95
        FROM metrics WHERE ts >= %(start)s AND ts < %(end)s""",
}
_PCT_SAMPLED = {
    True: """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95
        FROM metrics TABLESAMPLE SYSTEM (%(pct)s) REPEATABLE (1)
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(start)s AND ts < %(end)s""",
    False: """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95
        FROM metrics TABLESAMPLE SYSTEM (%(pct)s) REPEATABLE (1)
        WHERE ts >= %(start)s AND ts < %(end)s""",
}
_COUNTERS = """
    SELECT coalesce(sum(stored), 0)::bigint AS stored, coalesce(sum(duplicates), 0)::bigint AS duplicates,
           coalesce(sum(redeliveries), 0)::bigint AS redeliveries, coalesce(sum(conflicts), 0)::bigint AS conflicts
    FROM ingest_counters"""
_DLQ_BY_REASON = "SELECT reason, count(*) AS count FROM dead_letters GROUP BY reason ORDER BY reason"


@dataclass(frozen=True)
class Summary:
    events: int
    sensors: int
    first: datetime | None
    last: datetime | None
    min: float | None
    max: float | None
    avg: float | None
    p50: float | None
    p95: float | None
    percentiles_exact: bool
    resolution: str
    stored_total: int
    duplicates: int
    redeliveries: int
    conflicts: int
    dlq: dict[str, int]


async def summary(
    conn: psycopg.AsyncConnection[Any],
    sensors: list[str] | None,
    start: datetime,
    end: datetime,
    sample_rows: int = SAMPLE_ROWS,
    resolution: str = MINUTE,
    raw_covered: bool = True,
) -> Summary:
    """Totals from the `resolution` rollups; first and last times from both tiers of readings;
    percentiles from raw rows, only when `raw_covered` (the range starts inside the raw
    retention) and no part of the range is compacted, else None."""
    s = bool(sensors)
    params: dict[str, Any] = {"sensors": sensors, "start": start, "end": end}
    if not s:
        params.update(hour_split(start, end))
    totals = _SUMMARY_ROLLUP[s] if resolution == MINUTE else _SUMMARY_HOURS[s]
    async with conn.cursor(row_factory=dict_row) as cur:

        async def one(sql: str, p: dict[str, Any] | None = None) -> Row:
            await cur.execute(sql, p)
            return await cur.fetchone() or {}

        agg = await one(totals, params)
        fl = await one(_FIRST_LAST[s], params)
        cold = await compacted.first_last(conn, sensors, start, end)
        if cold[0] is not None:  # part of the range is compacted: its percentiles are not sampled
            raw_covered = False
            fl = {"first": _least(fl.get("first"), cold[0]), "last": _greatest(fl.get("last"), cold[1])}
        count = int(agg.get("count") or 0)
        exact = count <= sample_rows and raw_covered
        if count == 0 or not raw_covered:
            pct: Row = {}
        elif exact:
            pct = await one(_PCT_EXACT[s], params)
        else:
            params["pct"] = max(0.01, min(100.0, 100.0 * sample_rows / count))
            pct = await one(_PCT_SAMPLED[s], params)
            if pct.get("p50") is None:  # the sampled blocks held none of the matching rows
                exact = True
                pct = await one(_PCT_EXACT[s], params)
        counters = await one(_COUNTERS)
        await cur.execute(_DLQ_BY_REASON)
        dlq = {r["reason"]: int(r["count"]) for r in await cur.fetchall()}
    return Summary(
        events=count,
        sensors=int(agg.get("sensors") or 0),
        first=fl.get("first"),
        last=fl.get("last"),
        min=agg.get("min"),
        max=agg.get("max"),
        avg=agg.get("avg"),
        p50=pct.get("p50"),
        p95=pct.get("p95"),
        percentiles_exact=exact,
        resolution=resolution,
        stored_total=int(counters.get("stored", 0)),
        duplicates=int(counters.get("duplicates", 0)),
        redeliveries=int(counters.get("redeliveries", 0)),
        conflicts=int(counters.get("conflicts", 0)),
        dlq=dlq,
    )


def _least(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def counters(conn: psycopg.Connection[Any]) -> Row:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_COUNTERS).fetchone() or {}


# -- the overview's history (api.history) ------------------------------------------------------
# Freshness (event time to stored) of the newest stored events by event time that were stored
# since the last look: a backward scan of the time index, FRESHNESS_ROWS rows at most, so its
# cost does not grow with the store. Under lag the consumer stores in event order per
# partition, so the newest events by time are also the ones stored last. Events stamped after
# `until` (the pipeline's now: a producer whose clock runs ahead) are left out, or they would
# hide the others until time caught up with them.
FRESHNESS_ROWS = 2000
_FRESHNESS = """
SELECT count(*) AS n,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts) * 1000) AS pct
FROM (SELECT ts, ingested_at FROM metrics WHERE ts >= %(floor)s AND ts <= %(until)s
      ORDER BY ts DESC LIMIT %(rows)s) newest
WHERE ingested_at > %(since)s"""


def freshness(
    conn: psycopg.Connection[Any], since: datetime, floor: datetime, until: datetime
) -> tuple[float, float] | None:
    """p50 and p99 of event-to-stored in ms over the newest events stored after `since` (event
    times from `floor`, which prunes the day partitions, to `until`), or None if none was."""
    params = {"since": since, "floor": floor, "until": until, "rows": FRESHNESS_ROWS}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_FRESHNESS, params).fetchone()
    if row is None or not row["n"]:
        return None
    p50, p99 = row["pct"]
    return float(p50), float(p99)


# A silent sensor, as `api.routes.sensors.sensor_status` judges one (queries.SILENT_*). One
# scan of sensor_stats (a row per sensor).
_SILENT = f"""
SELECT count(*) OVER () AS n, sensor_id FROM sensor_stats
WHERE {queries.QUIET_SQL} > %(factor)s * coalesce({queries.INTERVAL_SQL}, %(default)s) + %(grace)s
ORDER BY updated_at LIMIT %(examples)s"""  # noqa: S608 (static text)


def silent_sensors(conn: psycopg.Connection[Any], examples: int = 5) -> tuple[int, list[str]]:
    """How many sensors are silent, and the longest-silent few."""
    params = {
        "factor": queries.SILENT_FACTOR,
        "default": queries.DEFAULT_INTERVAL_S,
        "grace": queries.SILENT_GRACE_S,
        "examples": examples,
    }
    with conn.cursor() as cur:
        rows = cur.execute(_SILENT, params).fetchall()
    return (int(rows[0][0]) if rows else 0), [r[1] for r in rows]
