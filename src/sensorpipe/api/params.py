"""Query parameters shared by the routes, and their checks: ids, time ranges, buckets and
keyset cursors. Each check raises a 400 whose `detail` says what was wrong."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import HTTPException, Query
from pydantic import AwareDatetime

from sensorpipe.api import schemas as s
from sensorpipe.contracts.events import ID_PATTERN, MAX_ID_LEN

MAX_SENSORS = 100
MAX_LIMIT = 10_000
MAX_RAW_RANGE = timedelta(days=7)
MAX_BUCKETS = 10_000
_BUCKET = re.compile(r"^(\d{1,5})(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

SensorIds = Annotated[
    list[str] | None,
    Query(alias="sensor_id", max_length=MAX_SENSORS, description=f"Repeatable; at most {MAX_SENSORS}."),
]
# Error responses every data route may give, documented so clients (and schemathesis) know them.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": s.Problem, "description": "A bad range, bucket, id or cursor; `detail` says which."},
    503: {"model": s.Problem, "description": "The database is unavailable or the query timed out."},
}
Start = Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone. Default: end - 1 h.")]
End = Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone, exclusive. Default: now.")]


def check_ids(ids: list[str] | None) -> list[str] | None:
    if not ids:
        return None
    for i in ids:
        if not 1 <= len(i) <= MAX_ID_LEN or not re.match(ID_PATTERN, i):
            raise HTTPException(400, f"{i[:80]!r} is not a valid id: 1-{MAX_ID_LEN} letters, digits or ._:@/+=-")
    return list(dict.fromkeys(ids))


# Times outside these bounds are refused: near the ends of Python's calendar, arithmetic on
# them (the default start, an offset to UTC) overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
OUT_OF_BOUNDS = f"times must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"


def time_range(
    start: datetime | None, end: datetime | None, default: timedelta, limit: timedelta, now: datetime
) -> tuple[datetime, datetime]:
    try:
        for t in (start, end):
            if t is not None and not EARLIEST <= t <= LATEST:
                raise HTTPException(400, OUT_OF_BOUNDS)
        end = end or now
        start = start or end - default
    except OverflowError as e:  # an extreme zone offset on a date at the calendar's edge
        raise HTTPException(400, OUT_OF_BOUNDS) from e
    if end <= start:
        raise HTTPException(400, "end must be after start")
    if end - start > limit:
        raise HTTPException(400, f"the range may span at most {limit.days} days; narrow start/end")
    return start, end


def bucket_seconds(text: str) -> int:
    m = _BUCKET.match(text)
    if not m:
        raise HTTPException(400, "bucket must look like 1s, 30s, 5m, 1h or 1d")
    secs = int(m.group(1)) * _UNITS[m.group(2)]
    if not 1 <= secs <= 86_400:
        raise HTTPException(400, "bucket must be between 1s and 1d")
    return secs


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts, default=str)).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[Any]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as e:
        raise HTTPException(400, "cursor is not one this API issued") from e
    if not isinstance(parts, list) or len(parts) != n:
        raise HTTPException(400, "cursor is not one this API issued")
    return parts


def parse_ts(text: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(str(text))
    except ValueError as e:
        raise HTTPException(400, "cursor is not one this API issued") from e
    if ts.tzinfo is None:
        raise HTTPException(400, "cursor is not one this API issued")
    return ts
