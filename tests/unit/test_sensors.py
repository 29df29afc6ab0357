"""The simulated signal: drift plus noise with rare spikes, reproducible per (seed, sensor)."""

from __future__ import annotations

import statistics

from sensorpipe.producer.sensors import KINDS, SPIKE_P, Fleet, kind_of

T = 1_795_000_000.0  # a fixed epoch second: the daily cycle is held still


def _chunked(fleet: Fleet, total: int) -> list[float]:
    """The fleet's next `total` readings, drawn as the producer draws them: in chunks of
    uneven sizes that start and end anywhere in a round of the fleet."""
    got: list[float] = []
    start, chunk = 0, 1
    while len(got) < total:
        take = min(chunk, total - len(got))
        got += fleet.readings(start, take, T)
        start = (start + take) % len(fleet)
        chunk = chunk * 3 % 1_009 + 1
    return got


def _series(fleet: Fleet, slot: int, n: int) -> list[float]:
    """Sensor `slot`'s next `n` readings."""
    return _chunked(fleet, n * len(fleet))[slot :: len(fleet)]


def test_each_kind_is_noisy_around_its_baseline_not_uniform() -> None:
    fleet = Fleet(seed=7)
    fleet.resize(len(KINDS))
    for slot, kind in enumerate(KINDS):
        assert kind_of(slot) is kind
        values = _series(fleet, slot, 4000)
        spikes = [v for v in values if abs(v - statistics.median(values)) > kind.spike / 2]
        calm = [v for v in values if v not in spikes]
        sd = statistics.pstdev(calm)
        # noise of the kind's size plus a bounded drift; nothing like a uniform spread
        assert 0.5 * kind.noise < sd < 0.5 * kind.noise + 40 * kind.drift + 1.5 * kind.noise, (kind.name, sd)
        lo, hi = kind.base
        assert lo - kind.cycle - 1 < statistics.median(values) < hi + kind.cycle + 1
        decimals = [len(repr(v).split(".")[1]) if "." in repr(v) else 0 for v in values[:100]]
        assert max(decimals) <= max(kind.decimals, 1)


def test_spikes_are_rare_and_mostly_upward() -> None:
    fleet = Fleet(seed=11)
    fleet.resize(100)
    stream = fleet.readings(0, 100 * 10_000, T)
    up = down = 0
    for slot in range(0, 100, len(KINDS)):  # the first kind's sensors
        kind = kind_of(slot)
        values = stream[slot::100]
        med = statistics.median(values)
        up += sum(v - med > kind.spike / 2 for v in values)
        down += sum(med - v > kind.spike / 2 for v in values)
    expected = SPIKE_P * 20 * 10_000  # 100
    assert 0.5 * expected < up + down < 1.5 * expected
    assert up > down


def test_same_seed_same_signal_other_seed_other_signal() -> None:
    a, b, c = Fleet(seed=3), Fleet(seed=3), Fleet(seed=4)
    for f in (a, b, c):
        f.resize(50)
    ra, rb, rc = a.readings(0, 2000, T), b.readings(0, 2000, T), c.readings(0, 2000, T)
    assert len(ra) == 2000
    assert ra == rb
    assert ra != rc


def test_chunking_does_not_change_the_signal() -> None:
    """The producer asks for a rate's worth of readings at a time; how it cuts the stream
    into calls must not change a single value."""
    a, b = Fleet(seed=5), Fleet(seed=5)
    for f in (a, b):
        f.resize(37)
    whole = a.readings(0, 37 * 300, T)
    assert _chunked(b, 37 * 300) == whole
    assert all(isinstance(v, float) for v in whole)


def test_a_resized_fleet_keeps_its_sensors_state() -> None:
    a, b = Fleet(seed=9), Fleet(seed=9)
    a.resize(10)
    b.resize(10)
    a.readings(0, 100, T)
    b.readings(0, 100, T)
    b.resize(20)
    b.resize(10)  # grown and shrunk back: the first ten sensors carry on where they were
    assert a.readings(0, 50, T) == b.readings(0, 50, T)
