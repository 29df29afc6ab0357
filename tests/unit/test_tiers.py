"""Which retention tier serves a read: pure rules, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensorpipe.storage.queries import HOUR, MINUTE, RAW, Horizons, TierError, Tiers

NOW = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 29, tzinfo=UTC)
T = Tiers(raw_days=7, minute_days=90, hour_days=730)


def test_each_tier_starts_at_a_utc_midnight() -> None:
    assert T.starts(NOW) == {
        RAW: MIDNIGHT - timedelta(days=7),
        MINUTE: MIDNIGHT - timedelta(days=90),
        HOUR: MIDNIGHT - timedelta(days=730),
    }


@pytest.mark.parametrize(
    ("days_back", "bucket_s", "tier"),
    [
        (1, 10, RAW),  # sub-minute buckets need raw rows
        (7, 30, RAW),  # the raw tier's first day still counts
        (1, 60, MINUTE),
        (89, 900, MINUTE),
        (1, 3600, MINUTE),  # one hour: the minute rows (the API's hour cache serves these)
        (1, 86_400, HOUR),  # whole hours beyond one: hours hold the same sums in fewer rows
        (100, 3600, HOUR),  # past the minutes' retention
        (100, 7200, HOUR),
    ],
)
def test_the_finest_tier_that_covers_the_range_and_divides_the_bucket(days_back: int, bucket_s: int, tier: str) -> None:
    assert T.for_aggregate(MIDNIGHT - timedelta(days=days_back), bucket_s, NOW) == tier


@pytest.mark.parametrize(("days_back", "bucket_s", "why"), [(8, 30, "raw readings"), (91, 900, "whole hours")])
def test_a_bucket_no_covering_tier_can_serve_is_refused(days_back: int, bucket_s: int, why: str) -> None:
    with pytest.raises(TierError, match=why):
        T.for_aggregate(MIDNIGHT - timedelta(days=days_back), bucket_s, NOW)


def test_summaries_read_hours_past_the_minutes_retention() -> None:
    assert T.for_summary(MIDNIGHT - timedelta(days=90), NOW) == MINUTE
    assert T.for_summary(MIDNIGHT - timedelta(days=91), NOW) == HOUR


def test_a_raw_horizon_past_the_raw_days_narrows_the_raw_tier_only() -> None:
    horizon = MIDNIGHT - timedelta(days=2)
    assert T.starts(NOW, Horizons(raw=horizon))[RAW] == horizon
    assert T.starts(NOW, Horizons(raw=MIDNIGHT - timedelta(days=30)))[RAW] == MIDNIGHT - timedelta(
        days=7
    )  # days still rule
    assert T.for_aggregate(horizon, 30, NOW, Horizons(raw=horizon)) == RAW
    with pytest.raises(TierError, match="kept from 2026-11-27 00:00 UTC"):
        T.for_aggregate(horizon - timedelta(hours=1), 30, NOW, Horizons(raw=horizon))
    assert T.for_aggregate(horizon - timedelta(hours=1), 60, NOW, Horizons(raw=horizon)) == MINUTE


def test_a_minute_horizon_sends_older_minutes_to_the_hours() -> None:
    h = Horizons(raw=MIDNIGHT, minute=MIDNIGHT - timedelta(days=3))
    assert T.for_aggregate(MIDNIGHT - timedelta(days=3), 60, NOW, h) == MINUTE
    assert T.for_aggregate(MIDNIGHT - timedelta(days=4), 3600, NOW, h) == HOUR
    with pytest.raises(TierError, match="1-minute rollups are kept from 2026-11-26 00:00 UTC"):
        T.for_aggregate(MIDNIGHT - timedelta(days=4), 60, NOW, h)
    assert T.for_summary(MIDNIGHT - timedelta(days=4), NOW, h) == HOUR
    assert T.for_summary(MIDNIGHT - timedelta(days=2), NOW, h) == MINUTE
