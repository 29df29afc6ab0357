"""Sensors (their running statistics) and single processed events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam

from sensorpipe.api import schemas as s
from sensorpipe.api.deps import Db, Svc
from sensorpipe.api.params import (
    ERRORS,
    End,
    SensorIds,
    Start,
    check_ids,
    decode_cursor,
    encode_cursor,
    parse_ts,
    time_range,
)
from sensorpipe.contracts.events import ID_PATTERN_PORTABLE, MAX_ID_LEN
from sensorpipe.storage import queries, sensor_report


def sensor_status(quiet_s: float, interval_s: float | None) -> Literal["live", "late", "silent"]:
    """A per-sensor no-data alarm: quiet for several times its usual interval (a default
    interval where it is unknown), with a grace for batching and lag."""
    usual = interval_s if interval_s is not None else queries.DEFAULT_INTERVAL_S
    if quiet_s <= queries.LATE_FACTOR * usual + queries.LATE_GRACE_S:
        return "live"
    if quiet_s <= queries.SILENT_FACTOR * usual + queries.SILENT_GRACE_S:
        return "late"
    return "silent"


def sensor_fields(r: dict[str, Any]) -> dict[str, Any]:
    """A sensor_stats row's fields as s.SensorPublic names them."""
    interval = None if r["interval_s"] is None else float(r["interval_s"])
    quiet = max(0.0, float(r["quiet_s"]))
    return {
        "sensor_id": r["sensor_id"],
        "count": r["events"],
        "last_value": r["last_value"],
        "last_timestamp": r["last_ts"],
        "last_seen": r["last_seen"],
        "last_seq": r["last_seq"],
        "seq_gaps": r["seq_gaps"],
        "order_violations": r["order_violations"],
        "interval_s": interval,
        "quiet_s": quiet,
        "status": sensor_status(quiet, interval),
    }


def sensor_public(r: dict[str, Any]) -> s.SensorPublic:
    return s.SensorPublic(**sensor_fields(r))


async def get_sensors(
    db: Db,
    svc: Svc,
    q: Annotated[
        str | None,
        Query(max_length=MAX_ID_LEN, pattern=ID_PATTERN_PORTABLE, description="Substring of the sensor id."),
    ] = None,
    sort: Annotated[
        str,
        Query(
            pattern="^(sensor_id|events|last_seen|last_value|seq_gaps|order_violations|quiet)$",
            description="quiet: quiet time against the usual interval, worst first with desc (one page, no cursor).",
        ),
    ] = "sensor_id",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Per sensor: count, last value, last seen, last seq, seq gaps and order violations. Sorted
    by quiet, the page may be up to 2 s old (every viewer of the fleet worst first shares one)."""
    if sort == "quiet":
        return await _quiet_page(db, svc, q, order == "desc", limit)
    after = None
    if cursor:
        val, sid = decode_cursor(cursor, 2)
        after = (parse_ts(val) if sort == "last_seen" else val, str(sid))
    async with db.connection() as c:
        rows = await queries.sensors(c, q, sort, order == "desc", limit + 1, after)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        col = queries.SENSOR_SORTS[sort]
        last = rows[-1]
        val = last["last_seen" if col == "updated_at" else col]
        nxt = encode_cursor(val.isoformat() if isinstance(val, datetime) else val, last["sensor_id"])
    return Response(_sensors_body(rows, nxt), media_type="application/json")


async def _quiet_page(db: Db, svc: Svc, q: str | None, desc: bool, limit: int) -> Response:
    """One page by quiet time against the usual interval: a sort of the whole fleet, so its
    answer is shared for a moment rather than computed for each viewer."""
    key = (q, desc, limit)
    body = svc.quiet_pages.get(key)
    if body is None:
        async with db.connection() as c:
            rows = await queries.sensors(c, q, "quiet", desc, limit, None)
        body = svc.quiet_pages[key] = _sensors_body(rows, None)
    return Response(body, media_type="application/json")


def _sensors_body(rows: list[dict[str, Any]], nxt: str | None) -> bytes:
    """s.SensorsPage written by orjson: per-row models cost more CPU than the query."""
    return orjson.dumps({"data": [sensor_fields(r) for r in rows], "next_cursor": nxt}, option=orjson.OPT_UTC_Z)


async def get_sensor(db: Db, sensor_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)]) -> s.SensorPublic:
    """One sensor's running statistics."""
    check_ids([sensor_id])
    async with db.connection() as c:
        r = await queries.sensor(c, sensor_id)
    if r is None:
        raise HTTPException(404, f"no sensor {sensor_id!r} has been stored")
    return sensor_public(r)


async def get_sparklines(
    db: Db,
    svc: Svc,
    sensor_id: SensorIds = None,
    minutes: Annotated[int, Query(ge=5, le=360, description="How many whole minutes, up to now.")] = 60,
) -> Response:
    """The last minutes of each sensor asked for, a mean per minute, for the fleet's sparklines;
    an answer may be up to 5 s old (every viewer of a page of sensors shares one)."""
    ids = check_ids(sensor_id) or []
    now = svc.now()
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)  # the current minute included
    start = end - timedelta(minutes=minutes)
    key = (tuple(ids), minutes, start)
    body = svc.sparklines.get(key)
    if body is None:
        data = "{}"
        if ids:
            async with db.connection() as c:
                data = await sensor_report.sparklines_json(c, ids, start, end - timedelta(minutes=1))
        # the server writes `data` as s.Sparklines describes it (storage.sensor_report)
        body = orjson.dumps({"start": start, "minutes": minutes})[:-1] + b',"data":' + data.encode() + b"}"
        svc.sparklines[key] = body
    return Response(body, media_type="application/json")


REPORT_RANGE = timedelta(days=1)


async def get_sensor_report(
    db: Db,
    svc: Svc,
    sensor_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)],
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many of each list.")] = 50,
) -> s.SensorReport:
    """One sensor over a range (at most a day): its seq gaps and order violations with their
    times, conflicts recorded against its events, and its newest events."""
    check_ids([sensor_id])
    lo, hi = time_range(start, end, timedelta(hours=1), REPORT_RANGE, svc.now())
    async with db.connection() as c:
        r = await queries.sensor(c, sensor_id)
        if r is None:
            raise HTTPException(404, f"no sensor {sensor_id!r} has been stored")
        gaps, violations = await sensor_report.seq_events(c, sensor_id, lo, hi, limit)
        conflicts = await sensor_report.conflicts(c, sensor_id, lo, hi, limit)
        last = await sensor_report.last_events(c, sensor_id, lo, hi, min(limit, 20))
    return s.SensorReport(
        sensor=sensor_public(r),
        start=lo,
        end=hi,
        seq_gaps=[
            s.SeqGapPublic(timestamp=g["ts"], seq=g["seq"], previous_seq=g["prev_seq"],
                           missing=g["seq"] - g["prev_seq"] - 1, event_id=g["event_id"])
            for g in gaps
        ],
        order_violations=[
            s.OrderViolationPublic(timestamp=v["ts"], seq=v["seq"], after_seq=v["prev_seq"], event_id=v["event_id"])
            for v in violations
        ],
        conflicts=[
            s.ConflictPublic(event_id=c["event_id"], partition=c["kafka_partition"], offset=c["kafka_offset"],
                             seen_at=c["seen_at"])
            for c in conflicts
        ],
        last_events=[
            s.StoredEventPublic(timestamp=e["ts"], event_id=e["event_id"], value=e["value"], seq=e["seq"],
                                partition=e["kafka_partition"], offset=e["kafka_offset"], stored_at=e["ingested_at"])
            for e in last
        ],
    )  # fmt: skip


async def get_event(db: Db, event_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)]) -> s.EventPublic:
    """A processed event: where it came from, the stored reading, and the copies of it that
    were not stored (duplicates and conflicts)."""
    check_ids([event_id])
    async with db.connection() as c:
        r = await queries.event(c, event_id)
        ignored = await queries.ignored_copies(c, event_id) if r is not None else []
    if r is None:
        raise HTTPException(404, f"event {event_id!r} was not processed (or is older than retention)")
    reading = None
    if r["sensor_id"] is not None:
        reading = s.ReadingPublic(
            sensor_id=r["sensor_id"], event_id=r["event_id"], timestamp=r["ts"], value=r["value"], seq=r["seq"]
        )
    return s.EventPublic(
        event_id=r["event_id"],
        partition=r["kafka_partition"],
        offset=r["kafka_offset"],
        processed_at=r["processed_at"],
        reading=reading,
        ignored=[
            s.IgnoredCopyPublic(
                partition=i["kafka_partition"], offset=i["kafka_offset"], kind=i["kind"], seen_at=i["seen_at"]
            )
            for i in ignored
        ],
    )


def router() -> APIRouter:
    r = APIRouter()
    not_found = {**ERRORS, 404: {"model": s.Problem}}
    r.add_api_route("/api/sparklines", get_sparklines, response_model=s.Sparklines, responses=ERRORS, tags=["sensors"])
    r.add_api_route("/api/sensors", get_sensors, response_model=s.SensorsPage, responses=ERRORS, tags=["sensors"])
    r.add_api_route(
        "/api/sensors/{sensor_id}", get_sensor, response_model=s.SensorPublic, responses=not_found, tags=["sensors"]
    )
    r.add_api_route(
        "/api/sensors/{sensor_id}/report",
        get_sensor_report,
        response_model=s.SensorReport,
        responses=not_found,
        tags=["sensors"],
    )
    r.add_api_route(
        "/api/events/{event_id}", get_event, response_model=s.EventPublic, responses=not_found, tags=["metrics"]
    )
    return r
