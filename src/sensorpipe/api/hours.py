"""One sensor's aggregate in buckets that divide an hour, with its whole hours cached as
rendered JSON.

A dashboard asks for the same sensor's last hours again and again, and PostgreSQL spends most
of such a request writing the buckets as JSON (1,440 rows for a day of minutes). Whole hours
are kept here, keyed by (sensor, bucket, hour), and reused while the hour's fingerprint,
(rows, events) of its rollup rows, is unchanged: a rollup row only changes by gaining events,
so an unchanged fingerprint means unchanged rows (see `storage.queries.sensor_hours`). Every
request reads the fingerprints (one index-only scan) and renders only what is missing,
changed, or a partial hour at either end of its range. A response is therefore never staler
than the fingerprints it read.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from sensorpipe.storage import queries

_HOUR = timedelta(hours=1)

Key = tuple[str, int, datetime]  # sensor, bucket seconds, hour


class HourCache:
    """Rendered whole hours, least recently used out first beyond `max_bytes`.

    Not locked: the API uses it from its event loop only, and neither method awaits."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, tuple[int, int, bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Key, rows: int, events: int) -> bytes | None:
        got = self._items.get(key)
        if got is None or got[:2] != (rows, events):
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return got[2]

    def put(self, key: Key, rows: int, events: int, data: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old[2])
        self._items[key] = (rows, events, data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes and self._items:
            _k, (_r, _e, dropped) = self._items.popitem(last=False)
            self._bytes -= len(dropped)


def _floor_hour(t: datetime) -> datetime:
    return datetime.fromtimestamp(t.timestamp() // 3600 * 3600, UTC)


def cacheable(bucket_s: int) -> bool:
    """Buckets of whole minutes that divide an hour: no bucket spans two hours."""
    return bucket_s % 60 == 0 and 3600 % bucket_s == 0


async def sensor_buckets(
    conn: psycopg.AsyncConnection[Any], cache: HourCache, sensor: str, start: datetime, end: datetime, bucket_s: int
) -> bytes:
    """The JSON array `/api/readings/aggregate` returns for one sensor over [start, end) in
    buckets of `bucket_s` (see `cacheable`): the same rows, in the same order, as the
    uncached statement."""
    split = queries.hour_split(start, end)
    h0, h1 = split["h0"], split["h1"]  # whole hours: [h0, h1), empty when h0 == h1
    ready: dict[datetime, bytes] = {}
    wanted: list[datetime] = []
    if h0 < h1:
        for hour, rows, events in await queries.sensor_hours(conn, sensor, h0, h1):
            got = cache.get((sensor, bucket_s, hour), rows, events)
            if got is None:
                wanted.append(hour)
            else:
                ready[hour] = got
    # the partial hours at either end are rendered every time, cut to the range
    for edge in {_floor_hour(start), _floor_hour(end - timedelta(microseconds=1))}:
        if not (h0 <= edge and edge + _HOUR <= h1):
            wanted.append(edge)
    if wanted:
        for hour, rows, events, data in await queries.sensor_hours_json(
            conn, sensor, start, end, sorted(wanted), bucket_s
        ):
            inside = data[1:-1]  # each hour is a JSON array: its rows are kept without the brackets
            if h0 <= hour and hour + _HOUR <= h1:
                cache.put((sensor, bucket_s, hour), rows, events, inside)
            ready[hour] = inside
    return b"[" + b",".join([ready[h] for h in sorted(ready)]) + b"]"
