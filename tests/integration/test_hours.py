"""The API's cache of whole hours of one sensor's aggregate, against the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from sensorpipe.api.hours import HourCache, cacheable, sensor_buckets
from sensorpipe.storage import queries
from sensorpipe.storage.batch import Columns
from sensorpipe.storage.writer import BatchWriter

MINUTE_US = 60_000_000


def _events(start_us: int, n: int, step_us: int, sensors: tuple[str, ...], first_offset: int) -> Columns:
    c = Columns()
    for i in range(n):
        sensor = sensors[i % len(sensors)]
        off = first_offset + i
        c.append(str(uuid.uuid4()), sensor, start_us + i * step_us, float(i % 17), off, 0, off, off)
    return c


@pytest.mark.parametrize(("bucket_s", "rows"), [(60, 165), (300, 33)])  # 35+60+60+10 minutes; 7+12+12+2 buckets
def test_whole_hours_are_served_from_the_cache_until_their_rows_change(db_dsn: str, bucket_s: int, rows: int) -> None:
    w = BatchWriter(db_dsn, retention_days=7)
    base = int(time.time() // 3600 - 5) * 3600 * 1_000_000  # a whole hour, five hours ago
    w.write(_events(base, 600, 20_000_000, ("a", "b"), 0), [])  # a reading every 20 s for 3 h 20 min
    t0 = datetime.fromtimestamp(base / 1e6, UTC)
    lo, hi = t0 + timedelta(minutes=25), t0 + timedelta(hours=3, minutes=10)  # whole hours: +1 h, +2 h
    cache = HourCache()

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(db_dsn, autocommit=True) as conn:

            async def uncached(a: datetime = lo, b: datetime = hi) -> list[dict[str, object]]:
                data, _source = await queries.aggregate_json(conn, ["a"], a, b, bucket_s, queries.MINUTE)
                out: list[dict[str, object]] = orjson.loads(data)
                return out

            first = await sensor_buckets(conn, cache, "a", lo, hi, bucket_s)
            want = await uncached()
            assert orjson.loads(first) == want and len(want) == rows
            assert (cache.hits, cache.misses) == (0, 4)  # four hours touched, all rendered whole
            again = await sensor_buckets(conn, cache, "a", lo, hi, bucket_s)
            assert again == first and (cache.hits, cache.misses) == (4, 4)  # the end hours are cut from them
            # a late event in the first whole hour, and one of another sensor in the second
            w.write(_events(base + 90 * MINUTE_US + 5, 1, 1, ("a",), 10_000), [])
            w.write(_events(base + 150 * MINUTE_US + 5, 1, 1, ("b",), 10_001), [])
            after = await sensor_buckets(conn, cache, "a", lo, hi, bucket_s)
            assert after != first and orjson.loads(after) == await uncached()
            assert (cache.hits, cache.misses) == (7, 5)  # only the second hour of "a" changed
            # a range without a whole hour, one ending on an hour, and one cutting a bucket
            for a, b in [
                (t0 + timedelta(minutes=70), t0 + timedelta(minutes=110)),
                (t0, t0 + timedelta(hours=2)),
                (t0 + timedelta(minutes=62, seconds=30), t0 + timedelta(hours=2, minutes=3)),
            ]:
                assert orjson.loads(await sensor_buckets(conn, cache, "a", a, b, bucket_s)) == await uncached(a, b)
            # the same hours in another bucket size are other entries
            other = 300 if bucket_s == 60 else 60
            assert orjson.loads(await sensor_buckets(conn, cache, "a", lo, hi, other)) == orjson.loads(
                (await queries.aggregate_json(conn, ["a"], lo, hi, other, queries.MINUTE))[0]
            )

    asyncio.run(scenario())
    w.close()


def test_only_buckets_that_divide_an_hour_are_cached() -> None:
    assert [s for s in (1, 30, 60, 300, 420, 900, 3600, 7200, 86_400) if cacheable(s)] == [60, 300, 900, 3600]
