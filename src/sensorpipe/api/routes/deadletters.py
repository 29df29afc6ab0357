"""Dead letters: browsed by reason and time, and one with its original message, read back
from the dead-letter topic by position (bounded in size, read-only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import AwareDatetime

from sensorpipe.api import schemas as s
from sensorpipe.api.deps import Db, Svc, SyncDb
from sensorpipe.api.params import ERRORS
from sensorpipe.contracts.events import Reason
from sensorpipe.dlq import payload
from sensorpipe.storage import deadletters as store
from sensorpipe.storage.deadletters import StoredDeadLetter

PAYLOAD_MAX = 65_536  # bytes of one original message the API reads back
REASON_PATTERN = "^(" + "|".join(r.value for r in Reason) + ")$"


def public(d: StoredDeadLetter) -> dict[str, Any]:
    """A dead letter's fields as s.DeadLetterPublic names them."""
    return {
        "partition": d.kafka_partition,
        "offset": d.kafka_offset,
        "reason": d.reason,
        "detail": d.detail,
        "poison_label": d.poison_label,
        "dead_at": d.dead_at,
        "dlq_partition": d.dlq_partition,
        "dlq_offset": d.dlq_offset,
        "redriven_at": d.redriven_at,
        "redriven_event_id": d.redriven_event_id,
    }


def get_dead_letters(
    db: SyncDb,
    svc: Svc,
    reason: Annotated[str | None, Query(pattern=REASON_PATTERN)] = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """The newest dead letters (by reason and time, if asked), and the count of each reason (up
    to 5 s old)."""
    with db.connection() as c:
        rows = store.page(c, reason=reason, since=since, limit=limit)
        counts = svc.reason_counts(c)
    # written by orjson as s.DeadLettersPage describes it: per-row models cost more CPU than the query
    body = {"data": [public(d) for d in rows], "reasons": [{"reason": r, "count": n} for r, n in counts]}
    return Response(orjson.dumps(body), media_type="application/json")


STEPS = (60, 300, 900, 3600, 21_600)  # bucket sizes, smallest first; at most TIMELINE_BUCKETS of them
TIMELINE_BUCKETS = 120


async def get_dead_letter_timeline(
    db: Db, svc: Svc, hours: Annotated[int, Query(ge=1, le=24 * 30, description="How far back.")] = 24
) -> s.DeadLetterTimeline:
    """Dead letters by reason over the last `hours`, in at most 120 buckets (1 minute to 6 hours);
    an answer may be up to 5 s old (every viewer of the chart shares one count)."""
    cached = svc.timelines.get(hours)
    if cached is not None:
        return cached
    step = next((st for st in STEPS if hours * 3600 / st <= TIMELINE_BUCKETS), STEPS[-1])
    # dead_at is the database's wall clock (not the pipeline's, which a benchmark may compress)
    end = int(time.time()) // step * step
    first = end - (hours * 3600 // step - 1) * step
    async with db.connection() as c:
        rows = await store.timeline(c, datetime.fromtimestamp(first, UTC), step)
    at = list(range(first, end + step, step))
    counts: dict[str, list[int]] = {}
    for bucket, reason, n in rows:  # bucket: its start in epoch seconds
        if first <= bucket <= end:
            counts.setdefault(reason, [0] * len(at))[(bucket - first) // step] = n
    answer = s.DeadLetterTimeline(step_s=step, at=at, counts=counts)
    svc.timelines[hours] = answer
    return answer


def _bytes(data: bytes | None) -> s.BytesPublic | None:
    return None if data is None else s.BytesPublic(text=payload.printable(data), hex=data.hex(), size=len(data))


def get_dead_letter(
    db: SyncDb,
    svc: Svc,
    partition: Annotated[int, PathParam(ge=0, le=100_000)],
    offset: Annotated[int, PathParam(ge=0, le=2**63 - 1)],
) -> s.DeadLetterDetail:
    """One dead letter, with its original key, headers and value from the dead-letter topic."""
    with db.connection() as c:
        d = store.one(c, partition, offset)
    if d is None:
        raise HTTPException(404, f"no dead letter from partition {partition} offset {offset}")
    base = public(d)
    if d.dlq_partition is None or d.dlq_offset is None:
        return s.DeadLetterDetail(
            **base, key=None, value=None, headers=[], payload_error="dead-lettered before positions were recorded"
        )
    try:
        o = svc.dlq_reader.read(d.dlq_partition, d.dlq_offset)
    except payload.PayloadError as e:
        return s.DeadLetterDetail(**base, key=None, value=None, headers=[], payload_error=str(e))
    headers = [s.HeaderPublic(name=k, value=_bytes(v)) for k, v in o.headers]
    return s.DeadLetterDetail(**base, key=_bytes(o.key), value=_bytes(o.value), headers=headers, payload_error=None)


def router() -> APIRouter:
    r = APIRouter()
    not_found = {**ERRORS, 404: {"model": s.Problem}}
    r.add_api_route(
        "/api/dead-letters",
        get_dead_letters,
        response_model=s.DeadLettersPage,
        responses=ERRORS,
        tags=["dead letters"],
    )
    r.add_api_route(
        "/api/dead-letters/timeline",
        get_dead_letter_timeline,
        response_model=s.DeadLetterTimeline,
        responses=ERRORS,
        tags=["dead letters"],
    )
    r.add_api_route(
        "/api/dead-letters/{partition}/{offset}",
        get_dead_letter,
        response_model=s.DeadLetterDetail,
        responses=not_found,
        tags=["dead letters"],
    )
    return r
