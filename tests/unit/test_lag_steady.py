"""The benchmark's judgement of a steady lag, on synthetic lag series sampled once a second."""

from __future__ import annotations

from sensorpipe.proof.measure import lag_steady

RATE = 10_000
SECONDS = 60.0


def _series(lag_at: dict[int, float] | None = None, trend: float = 0.0, tooth: float = 0.0) -> list[tuple[float, int]]:
    """One sample a second: a base of 5,000, a trend in events per second, and a sawtooth
    that climbs by `tooth` over three samples and falls back (offsets committed in bursts)."""
    out = []
    for t in range(int(SECONDS) + 1):
        lag = 5_000 + trend * t + tooth * (t % 3) / 2
        out.append((float(t), int((lag_at or {}).get(t, lag))))
    return out


def test_a_flat_sawtooth_is_steady() -> None:
    assert lag_steady(_series(tooth=RATE), RATE, SECONDS)


def test_growth_of_two_percent_of_the_rate_a_second_is_not_steady() -> None:
    assert not lag_steady(_series(trend=0.02 * RATE, tooth=RATE), RATE, SECONDS)
    assert not lag_steady(_series(trend=0.02 * RATE), RATE, SECONDS)


def test_half_a_percent_a_second_is_steady() -> None:
    assert lag_steady(_series(trend=0.005 * RATE, tooth=RATE / 2), RATE, SECONDS)


def test_a_lag_of_more_than_five_seconds_of_events_is_not_steady() -> None:
    assert not lag_steady(_series(lag_at={50: 6 * RATE}), RATE, SECONDS)


def test_only_the_second_half_of_the_load_counts() -> None:
    # a backlog at start-up that has drained by mid-load does not count against the run
    assert lag_steady(_series(lag_at={t: 40_000 - 1_000 * t for t in range(25)}), RATE, SECONDS)
    assert not lag_steady([(40.0, 0), (59.0, 0)], RATE, SECONDS)  # too few samples to judge
