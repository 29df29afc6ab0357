"""The API's cache of whole hours of one sensor's 1-minute aggregate, against the database."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from sensorpipe.api.hours import HourCache, sensor_minutes
from sensorpipe.storage import queries
from sensorpipe.storage.writer import BatchWriter, Columns

MINUTE_US = 60_000_000


def _events(start_us: int, n: int, step_us: int, sensors: tuple[str, ...], first_offset: int) -> Columns:
    c = Columns()
    for i in range(n):
        sensor = sensors[i % len(sensors)]
        off = first_offset + i
        c.append(str(uuid.uuid4()), sensor, start_us + i * step_us, float(i % 17), off, 0, off, off)
    return c


def test_whole_hours_are_served_from_the_cache_until_their_rows_change(db_dsn: str) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    base = int(time.time() // 3600 - 5) * 3600 * 1_000_000  # a whole hour, five hours ago
    w.write(_events(base, 600, 20_000_000, ("a", "b"), 0), [])  # a reading every 20 s for 3 h 20 min
    t0 = datetime.fromtimestamp(base / 1e6, UTC)
    lo, hi = t0 + timedelta(minutes=25), t0 + timedelta(hours=3, minutes=10)  # whole hours: +1 h, +2 h
    cache = HourCache()
    with psycopg.connect(db_dsn, autocommit=True) as conn:

        def uncached() -> list[dict[str, object]]:
            data, _source = queries.aggregate_json(conn, ["a"], lo, hi, 60)
            rows: list[dict[str, object]] = orjson.loads(data)
            return rows

        first = sensor_minutes(conn, cache, "a", lo, hi)
        want = uncached()
        assert orjson.loads(first) == want and len(want) == 165  # 35 + 60 + 60 + 10 minutes
        assert (cache.hits, cache.misses) == (0, 2)
        again = sensor_minutes(conn, cache, "a", lo, hi)
        assert again == first and (cache.hits, cache.misses) == (2, 2)
        # a late event in the first whole hour, and one of another sensor in the second
        w.write(_events(base + 90 * MINUTE_US + 5, 1, 1, ("a",), 10_000), [])
        w.write(_events(base + 150 * MINUTE_US + 5, 1, 1, ("b",), 10_001), [])
        after = sensor_minutes(conn, cache, "a", lo, hi)
        assert after != first and orjson.loads(after) == uncached()
        assert (cache.hits, cache.misses) == (3, 3)  # the second hour of "a" did not change
        # a range without a whole hour, and one ending on an hour
        for a, b in [(t0 + timedelta(minutes=70), t0 + timedelta(minutes=110)), (t0, t0 + timedelta(hours=2))]:
            assert orjson.loads(sensor_minutes(conn, cache, "a", a, b)) == orjson.loads(
                queries.aggregate_json(conn, ["a"], a, b, 60)[0]
            )
    w.close()
