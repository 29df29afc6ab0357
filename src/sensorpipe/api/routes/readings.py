"""Readings, aggregates and summaries: the time-series read paths."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Response

from sensorpipe.api import hours
from sensorpipe.api import schemas as s
from sensorpipe.api.deps import Db, Svc
from sensorpipe.api.params import (
    ERRORS,
    MAX_BUCKETS,
    MAX_LIMIT,
    MAX_RAW_RANGE,
    End,
    SensorIds,
    Start,
    bucket_seconds,
    check_ids,
    decode_cursor,
    encode_cursor,
    parse_ts,
    time_range,
)
from sensorpipe.storage import queries, summaries


async def get_readings(
    db: Db,
    svc: Svc,
    sensor_id: SensorIds = None,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Raw readings in time order, with keyset pagination (at most 7 days per request)."""
    ids = check_ids(sensor_id)
    lo, hi = time_range(start, end, timedelta(hours=1), MAX_RAW_RANGE, svc.now())
    after = None
    if cursor:
        ts, eid = decode_cursor(cursor, 2)
        after = (parse_ts(ts), str(eid))
    async with db.connection() as c:
        rows = await queries.readings(c, ids, lo, hi, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["timestamp"].isoformat(), rows[-1]["event_id"]) if more and rows else None
    # Rows go out as they came: the SQL names the columns as the schema does, and orjson
    # writes thousands of them far faster than per-row pydantic models.
    return Response(orjson.dumps({"data": rows, "next_cursor": nxt}), media_type="application/json")


async def get_aggregate(
    db: Db,
    svc: Svc,
    sensor_id: SensorIds = None,
    start: Start = None,
    end: End = None,
    bucket: Annotated[str, Query(max_length=8, description="1s to 1d, e.g. 10s, 1m, 15m, 1h, 1d.")] = "1m",
) -> Response:
    """count, min, max and avg per bucket and sensor, from the finest tier that covers the range
    (raw rows, 1-minute or 1-hour rollups; `resolution` says which)."""
    ids = check_ids(sensor_id)
    secs = bucket_seconds(bucket)
    now, tiers = svc.now(), svc.cfg.tiers
    lo, hi = time_range(start, end, timedelta(hours=1), timedelta(days=tiers.hour_days), now)
    if (hi - lo).total_seconds() / secs > MAX_BUCKETS:
        raise HTTPException(400, f"at most {MAX_BUCKETS} buckets per sensor: use a larger bucket")
    try:
        tier = tiers.for_aggregate(lo, secs, now, svc.horizons())
    except queries.TierError as e:
        raise HTTPException(400, str(e)) from e
    async with db.connection() as c:
        one = ids[0] if ids is not None and len(ids) == 1 else None
        if one is not None and tier == queries.MINUTE and hours.cacheable(secs) and svc.hour_cache.admit(one, secs):
            # a sensor's chart, asked for again: whole hours cached
            data, source = await hours.sensor_buckets(c, svc.hour_cache, one, lo, hi, secs), "metrics_1m"
        else:
            data, source = await queries.aggregate_json(c, ids, lo, hi, secs, tier)
    # PostgreSQL built the array; the envelope is written around it without parsing it.
    tail = orjson.dumps({"next_cursor": None, "bucket_seconds": secs, "source": source, "resolution": tier})
    return Response(b'{"data":' + data + b"," + tail[1:], media_type="application/json")


async def get_summary(
    db: Db, svc: Svc, sensor_id: SensorIds = None, start: Start = None, end: End = None
) -> s.SummaryPublic:
    """Totals and value statistics over a range (default: the last 24 h)."""
    ids = check_ids(sensor_id)
    now, tiers = svc.now(), svc.cfg.tiers
    lo, hi = time_range(start, end, timedelta(hours=24), timedelta(days=tiers.hour_days), now)
    kept = svc.horizons()
    tier = tiers.for_summary(lo, now, kept)
    raw = lo >= tiers.starts(now, kept)[queries.RAW]
    async with db.connection() as c:
        r = await summaries.summary(c, ids, lo, hi, resolution=tier, raw_covered=raw)
    return s.SummaryPublic(
        start=lo,
        end=hi,
        events=r.events,
        sensors=r.sensors,
        first_event=r.first,
        last_event=r.last,
        count=r.events,
        min=r.min,
        max=r.max,
        avg=r.avg,
        p50=r.p50,
        p95=r.p95,
        percentiles_exact=r.percentiles_exact,
        resolution=r.resolution,
        stored_total=r.stored_total,
        duplicates_ignored=r.duplicates,
        redeliveries=r.redeliveries,
        conflicts=r.conflicts,
        dlq_by_reason=r.dlq,
    )


def router() -> APIRouter:
    r = APIRouter(tags=["metrics"])
    r.add_api_route("/api/readings", get_readings, response_model=s.ReadingsPage, responses=ERRORS)
    r.add_api_route("/api/readings/aggregate", get_aggregate, response_model=s.AggregatePage, responses=ERRORS)
    r.add_api_route("/api/summary", get_summary, response_model=s.SummaryPublic, responses=ERRORS)
    return r
