"""The API's cache of rendered hours: cutting an hour to a range, fingerprints and size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from sensorpipe.api.hours import Hour, HourCache

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a whole hour


def _hour(minutes: list[int]) -> Hour:
    objects = [orjson.dumps({"bucket": T0 + 60 * m, "count": m}).decode() for m in minutes]
    return Hour.of(objects, [T0 + 60 * m for m in minutes])


def test_an_hour_is_cut_to_the_buckets_that_start_in_the_range() -> None:
    h = _hour([0, 1, 2, 30, 59])

    def counts(lo: float, hi: float) -> list[int]:
        return [o["count"] for o in orjson.loads(b"[" + h.within(lo, hi) + b"]")]

    assert counts(T0, T0 + 3600) == [0, 1, 2, 30, 59]
    assert counts(T0 + 30, T0 + 3600) == [1, 2, 30, 59]  # the minute that starts before the range is out
    assert counts(T0 + 60, T0 + 120.5) == [1, 2]  # a minute starting before the end is in
    assert counts(T0 + 120, T0 + 1800) == [2]
    assert counts(T0 + 1800, T0 + 3600) == [30, 59]
    assert counts(T0 + 181, T0 + 1799) == []
    assert h.within(T0 - 7200, T0) == b""


def test_the_cache_keeps_to_its_size() -> None:
    cache = HourCache(max_bytes=3 * _hour([0, 1]).size())
    t = datetime.fromtimestamp(T0, UTC)
    for h in range(5):
        cache.put(("a", 60, t + timedelta(hours=h)), 1, 1, _hour([0, 1]))
    assert cache.get(("a", 60, t), 1, 1) is None  # the oldest went first
    assert cache.get(("a", 60, t + timedelta(hours=4)), 1, 1) == _hour([0, 1])
    assert cache.get(("a", 60, t + timedelta(hours=4)), 1, 2) is None  # another fingerprint: a miss
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_chart_is_admitted_on_its_second_request_within_the_notes() -> None:
    cache = HourCache(max_bytes=2 * _hour([0, 1]).size(), notes=3)
    t = datetime.fromtimestamp(T0, UTC)
    assert not cache.admit("a", 60)  # first request: noted, served without the cache
    assert cache.admit("a", 60)  # asked again: rendered into the cache
    assert not cache.admit("a", 900)  # another bucket is another chart
    for sensor in "bcd":  # three other charts push a's 900 s note out
        assert not cache.admit(sensor, 60)
    assert not cache.admit("a", 900)
    cache.put(("a", 60, t), 1, 1, _hour([0, 1]))
    assert cache.admit("a", 60) and cache.admit("a", 60)  # while it holds an hour of a chart
    cache.put(("b", 60, t), 1, 1, _hour([0, 1]))
    cache.put(("b", 60, t + timedelta(hours=1)), 1, 1, _hour([0, 1]))  # evicts a's only hour
    assert cache.get(("a", 60, t), 1, 1) is None
    assert not cache.admit("a", 60)  # a chart with no hour left is noted again
    cache.put(("b", 60, t + timedelta(hours=1)), 1, 2, _hour([0, 1]))  # replaced in place
    cache.put(("c", 60, t), 1, 1, _hour([0, 1]))  # evicts b's first hour; b still holds one
    assert cache.admit("b", 60)
    cache.put(("d", 60, t), 1, 1, _hour([0, 1]))  # evicts b's last hour
    assert not cache.admit("b", 60)
