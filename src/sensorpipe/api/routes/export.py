"""Raw readings of a range as CSV, streamed page by page: bounded in range (as
`/api/readings`), in rows (CSV_MAX_ROWS) and in memory (one page at a time, and a database
connection only while a page is read)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from sensorpipe.api.deps import Db, Svc
from sensorpipe.api.params import ERRORS, MAX_RAW_RANGE, End, SensorIds, Start, check_ids, time_range
from sensorpipe.storage import queries

CSV_MAX_ROWS = 1_000_000
PAGE = 5_000
COLUMNS = ("timestamp", "sensor_id", "event_id", "value", "seq")


def _lines(rows: list[dict[str, Any]], header: bool) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(COLUMNS)
    for r in rows:
        w.writerow((r["timestamp"].isoformat(), r["sensor_id"], r["event_id"], repr(r["value"]), r["seq"]))
    return out.getvalue()


async def _pages(db: Db, ids: list[str] | None, lo: datetime, hi: datetime) -> AsyncIterator[str]:
    after: tuple[datetime, str] | None = None
    sent = 0
    while True:
        take = min(PAGE, CSV_MAX_ROWS - sent)
        async with db.connection() as c:
            rows = await queries.readings(c, ids, lo, hi, take, after)
        yield _lines(rows, header=after is None)
        sent += len(rows)
        if len(rows) < take or sent >= CSV_MAX_ROWS:
            return
        after = (rows[-1]["timestamp"], rows[-1]["event_id"])


async def get_readings_csv(db: Db, svc: Svc, sensor_id: SensorIds = None, start: Start = None, end: End = None) -> Any:
    """Raw readings of [start, end) in time order as CSV (timestamp, sensor_id, event_id,
    value, seq), at most 7 days and 1,000,000 rows: a range holding more is cut there (the
    `X-Row-Cap` header says how many), so narrow it to get the rest."""
    ids = check_ids(sensor_id)
    lo, hi = time_range(start, end, timedelta(hours=1), MAX_RAW_RANGE, svc.now())
    name = f"readings-{lo:%Y%m%dT%H%M%SZ}-{hi:%Y%m%dT%H%M%SZ}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Row-Cap": str(CSV_MAX_ROWS)}
    return StreamingResponse(_pages(db, ids, lo, hi), media_type="text/csv; charset=utf-8", headers=headers)


def router() -> APIRouter:
    r = APIRouter(tags=["metrics"])
    r.add_api_route(
        "/api/readings.csv",
        get_readings_csv,
        responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "The readings as CSV."}},
        response_class=StreamingResponse,
    )
    return r
