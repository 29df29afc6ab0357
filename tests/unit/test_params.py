"""api.params: each check of a route's parameters refuses with a 400 that says what was wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi import HTTPException

from sensorpipe.api.params import (
    MAX_RAW_RANGE,
    bucket_seconds,
    check_ids,
    decode_cursor,
    encode_cursor,
    parse_ts,
    time_range,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _refused(fn: object, *args: object) -> str:
    with pytest.raises(HTTPException) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.status_code == 400
    return str(e.value.detail)


def test_ids_are_checked_and_deduplicated_in_order() -> None:
    assert check_ids(None) is None and check_ids([]) is None
    assert check_ids(["b", "a", "b"]) == ["b", "a"]
    assert "is not a valid id" in _refused(check_ids, ["ok", "bad id"])
    assert "is not a valid id" in _refused(check_ids, ["x" * 500])


def test_a_range_defaults_from_now_and_is_bounded() -> None:
    assert time_range(None, None, timedelta(hours=1), MAX_RAW_RANGE, NOW) == (NOW - timedelta(hours=1), NOW)
    start = NOW - timedelta(hours=3)
    assert time_range(start, None, timedelta(hours=1), MAX_RAW_RANGE, NOW) == (start, NOW)
    assert "end must be after start" in _refused(time_range, NOW, NOW, timedelta(hours=1), MAX_RAW_RANGE, NOW)
    far = NOW - timedelta(days=8)
    assert "at most 7 days" in _refused(time_range, far, None, timedelta(hours=1), MAX_RAW_RANGE, NOW)


def test_times_at_the_calendars_edge_are_refused_not_overflowed() -> None:
    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    assert "times must lie between" in _refused(time_range, edge, None, timedelta(hours=1), MAX_RAW_RANGE, NOW)


@pytest.mark.parametrize(("text", "secs"), [("1s", 1), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86_400)])
def test_buckets(text: str, secs: int) -> None:
    assert bucket_seconds(text) == secs


@pytest.mark.parametrize(
    ("text", "says"), [("2d", "between 1s and 1d"), ("1w", "must look like"), ("", "must look like")]
)
def test_bad_buckets(text: str, says: str) -> None:
    assert says in _refused(bucket_seconds, text)


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    c = encode_cursor("2026-11-30T12:00:00+00:00", "ev-1")
    assert decode_cursor(c, 2) == ["2026-11-30T12:00:00+00:00", "ev-1"]
    assert "not one this API issued" in _refused(decode_cursor, c, 3)
    assert "not one this API issued" in _refused(decode_cursor, "%%%", 2)
    assert parse_ts("2026-11-30T12:00:00+00:00") == NOW
    assert "not one this API issued" in _refused(parse_ts, "2026-11-30T12:00:00")  # no zone
