"""Raw readings of a range as CSV, streamed page by page: bounded in range (as
`/api/readings`), in rows (CSV_MAX_ROWS) and in memory (one page at a time, and a database
connection only while a page is read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from sensorpipe.api.deps import Db, Svc
from sensorpipe.api.params import ERRORS, MAX_RAW_RANGE, End, SensorIds, Start, check_ids, time_range
from sensorpipe.storage import queries

CSV_MAX_ROWS = 1_000_000
COLUMNS = ("timestamp", "sensor_id", "event_id", "value", "seq")
CSV_TYPE = "text/csv; charset=utf-8"
Cursor = tuple[datetime, str] | None


def _lines(rows: list[queries.Row], header: bool) -> str:
    """CSV lines of readings, joined directly rather than through csv.writer: no field needs
    quoting, as ids match contracts.events.ID_PATTERN (no comma, quote or line break) and the
    rest are times and numbers."""
    head = [",".join(COLUMNS) + "\n"] if header else []
    return "".join(
        head
        + [f"{r['timestamp'].isoformat()},{r['sensor_id']},{r['event_id']},{r['value']!r},{r['seq']}\n" for r in rows]
    )


async def _page(
    db: Db, ids: list[str] | None, lo: datetime, hi: datetime, take: int, after: Cursor
) -> list[queries.Row]:
    async with db.connection() as c:
        return await queries.readings(c, ids, lo, hi, take, after)


async def _pages(
    db: Db, ids: list[str] | None, lo: datetime, hi: datetime, first: list[queries.Row], page: int
) -> AsyncIterator[str]:
    """The CSV from its first page (a full one) on, `page` rows at a time, up to CSV_MAX_ROWS."""
    rows, sent, header = first, 0, True
    while True:
        yield _lines(rows, header)
        sent += len(rows)
        take = min(page, CSV_MAX_ROWS - sent)
        if len(rows) < page or take <= 0:
            return
        rows, header = await _page(db, ids, lo, hi, take, (rows[-1]["timestamp"], rows[-1]["event_id"])), False


async def get_readings_csv(db: Db, svc: Svc, sensor_id: SensorIds = None, start: Start = None, end: End = None) -> Any:
    """Raw readings of [start, end) in time order as CSV (timestamp, sensor_id, event_id,
    value, seq), at most 7 days and 1,000,000 rows: a range holding more is cut there (the
    `X-Row-Cap` header says how many), so narrow it to get the rest."""
    ids = check_ids(sensor_id)
    lo, hi = time_range(start, end, timedelta(hours=1), MAX_RAW_RANGE, svc.now())
    name = f"readings-{lo:%Y%m%dT%H%M%SZ}-{hi:%Y%m%dT%H%M%SZ}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Row-Cap": str(CSV_MAX_ROWS)}
    page = min(svc.cfg.csv_page_rows, CSV_MAX_ROWS)
    first = await _page(db, ids, lo, hi, page, None)
    if len(first) < page:  # the whole range in one page: sent as it is, not streamed
        return Response(_lines(first, True), media_type=CSV_TYPE, headers=headers)
    return StreamingResponse(_pages(db, ids, lo, hi, first, page), media_type=CSV_TYPE, headers=headers)


def router() -> APIRouter:
    r = APIRouter(tags=["metrics"])
    r.add_api_route(
        "/api/readings.csv",
        get_readings_csv,
        responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "The readings as CSV."}},
        response_class=StreamingResponse,
    )
    return r
