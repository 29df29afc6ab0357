"""api.ttl: answers expire after their time and the cache never holds more than its bound."""

from __future__ import annotations

from sensorpipe.api.ttl import TtlCache


def test_an_answer_expires_after_its_time() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(5.0, 10, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 5.0
    assert cache.get("a") == 1
    now[0] = 5.1
    assert cache.get("a") is None
    assert cache.get("never") is None


def test_the_oldest_key_goes_first_when_full() -> None:
    cache: TtlCache[int, int] = TtlCache(60.0, 3)
    for k in range(5):
        cache.put(k, k * 10)
    assert [cache.get(k) for k in range(5)] == [None, None, 20, 30, 40]
    cache.put(2, 21)  # written again: now the newest
    cache.put(5, 50)
    assert [cache.get(k) for k in (2, 3, 4, 5)] == [21, None, 40, 50]
