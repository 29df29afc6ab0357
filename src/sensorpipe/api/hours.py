"""One sensor's aggregate in buckets that divide an hour, with its hours cached as rendered
JSON.

A dashboard asks for the same sensor's last hours again and again, and PostgreSQL spends most
of such a request writing the buckets as JSON (1,440 rows for a day of minutes). Hours are
kept here whole, keyed by (sensor, bucket, hour), and reused while the hour's fingerprint,
(rows, events) of its rollup rows, is unchanged: a rollup row only changes by gaining events,
so an unchanged fingerprint means unchanged rows (see `storage.queries.sensor_hours`). Every
request reads the fingerprints of the hours its range touches (one index-only scan) and
renders only the hours that are missing or changed. A range that starts or ends inside an
hour gets the buckets of the cached whole hour that start inside the range, which are the
rows the uncached statement returns when each bucket lies wholly on one side of the range's
ends: always for minutes, and for larger buckets when both ends fall on a bucket's edge.
Otherwise that end hour is computed from the rollup, cut to the range, and not kept. A
response is therefore never staler than the fingerprints it read.

While rows are being written, the current hour changes between requests and is rendered
again each time (60 rows for minutes); the hours before it come from the cache.

A chart is admitted on its second request (`HourCache.admit`): the first request for a
(sensor, bucket) the cache holds nothing of is served by the plain statement, which costs less
than reading fingerprints and rendering every hour (decision 007), and only leaves a note of
the pair. A pair asked for again while its note is among the last `notes` kept is then
rendered into the cache. So a stream of requests that never repeats a sensor (a scan of the
fleet) never pays for rendering hours nobody asks for again, and it cannot evict the charts
that are being refreshed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sensorpipe.storage import queries

_HOUR = timedelta(hours=1)

Key = tuple[str, int, datetime]  # sensor, bucket seconds, hour


@dataclass(frozen=True, slots=True)
class Hour:
    """An hour's buckets as JSON objects joined by commas: bucket i starts at `starts[i]`
    (epoch seconds) and its object at byte `offsets[i]` of `data`."""

    data: bytes
    starts: list[int]
    offsets: list[int]

    @classmethod
    def of(cls, objects: list[str], starts: list[int]) -> Hour:
        encoded = [o.encode() for o in objects]
        offsets, at = [], 0
        for e in encoded:
            offsets.append(at)
            at += len(e) + 1
        return cls(b",".join(encoded), starts, offsets)

    def size(self) -> int:
        return len(self.data) + 16 * len(self.starts)

    def within(self, lo_s: float, hi_s: float) -> bytes:
        """The buckets that start in [lo_s, hi_s), joined by commas."""
        i = bisect_left(self.starts, lo_s)
        j = bisect_left(self.starts, hi_s)
        if i == 0 and j == len(self.starts):
            return self.data
        if i >= j:
            return b""
        return self.data[self.offsets[i] : self.offsets[j] - 1 if j < len(self.offsets) else len(self.data)]


class HourCache:
    """Rendered whole hours, least recently used out first beyond `max_bytes`.

    Not locked: the API uses it from its event loop only, and neither method awaits."""

    def __init__(self, max_bytes: int = 32 << 20, notes: int = 512) -> None:
        self.max_bytes = max_bytes
        self.notes = notes
        self._items: OrderedDict[Key, tuple[int, int, Hour]] = OrderedDict()
        self._charts: dict[tuple[str, int], int] = {}  # (sensor, bucket) -> hours held
        self._noted: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.plain = 0  # requests not admitted

    def admit(self, sensor: str, bucket_s: int) -> bool:
        """Whether a request for this chart goes through the cache: it holds some of its hours,
        or it was asked for within the last `notes` charts not admitted. Otherwise the chart
        is noted, and the caller serves the request without the cache."""
        chart = (sensor, bucket_s)
        if chart in self._charts:
            return True
        if chart in self._noted:
            del self._noted[chart]
            return True
        self._noted[chart] = None
        if len(self._noted) > self.notes:
            self._noted.popitem(last=False)
        self.plain += 1
        return False

    def size(self) -> int:
        return self._bytes

    def get(self, key: Key, rows: int, events: int) -> Hour | None:
        got = self._items.get(key)
        if got is None or got[:2] != (rows, events):
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return got[2]

    def put(self, key: Key, rows: int, events: int, hour: Hour) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[2].size()
        else:
            self._charts[key[:2]] = self._charts.get(key[:2], 0) + 1
        self._items[key] = (rows, events, hour)
        self._bytes += hour.size()
        while self._bytes > self.max_bytes and self._items:
            k, (_r, _e, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped.size()
            held = self._charts.pop(k[:2]) - 1
            if held:
                self._charts[k[:2]] = held


class CacheCollector(Collector):
    """The cache's counters as Prometheus metrics, read at each scrape."""

    def __init__(self, cache: HourCache) -> None:
        self.cache = cache

    def collect(self) -> list[Metric]:
        c = self.cache
        hours = CounterMetricFamily(
            "sensorpipe_api_hour_cache_hours", "Hours a cached chart found (hit) or rendered (miss)", labels=["result"]
        )
        hours.add_metric(["hit"], c.hits)
        hours.add_metric(["miss"], c.misses)
        plain = CounterMetricFamily(
            "sensorpipe_api_hour_cache_plain_requests", "Chart requests served without the cache (not admitted)"
        )
        plain.add_metric([], c.plain)
        size = GaugeMetricFamily("sensorpipe_api_hour_cache_bytes", "Bytes the cached hours take", value=c.size())
        return [hours, plain, size]


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
    lo_s, hi_s = start.timestamp(), end.timestamp()
    first, last = _floor_hour(start), _floor_hour(end - timedelta(microseconds=1))
    # an end hour can be cut from its whole hour unless the range's end splits one of its buckets
    sliceable = bucket_s == 60 or (lo_s % bucket_s == 0 and hi_s % bucket_s == 0)
    ready: dict[datetime, bytes] = {}  # hour -> its buckets in range, joined by commas
    wanted: list[datetime] = []
    cut: list[datetime] = []
    for hour, rows, events in await queries.sensor_hours(conn, sensor, first, last + _HOUR):
        if not sliceable and (hour < start or hour + _HOUR > end):
            cut.append(hour)
            continue
        got = cache.get((sensor, bucket_s, hour), rows, events)
        if got is None:
            wanted.append(hour)
        else:
            ready[hour] = got.within(lo_s, hi_s)
    if wanted:
        for hour, rows, events, objects, starts in await queries.sensor_hours_json(conn, sensor, wanted, bucket_s):
            rendered = Hour.of(objects, starts)
            cache.put((sensor, bucket_s, hour), rows, events, rendered)
            ready[hour] = rendered.within(lo_s, hi_s)
    for hour in cut:  # rare: computed from the rollup over the part of the hour in range
        data, _source = await queries.aggregate_json(
            conn, [sensor], max(start, hour), min(end, hour + _HOUR), bucket_s, queries.MINUTE
        )
        ready[hour] = data[1:-1]
    return b"[" + b",".join([ready[h] for h in sorted(ready) if ready[h]]) + b"]"
