"""The API's cache of rendered hours: fingerprints and size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sensorpipe.api.hours import HourCache


def test_the_cache_keeps_to_its_size() -> None:
    cache = HourCache(max_bytes=100)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for h in range(5):
        cache.put(("a", 60, t + timedelta(hours=h)), 1, 1, b"x" * 30)
    assert cache.get(("a", 60, t), 1, 1) is None  # the oldest went first
    assert cache.get(("a", 60, t + timedelta(hours=4)), 1, 1) == b"x" * 30
    assert cache.get(("a", 60, t + timedelta(hours=4)), 1, 2) is None  # another fingerprint: a miss
