"""The simulated signal: drift plus noise with rare spikes, reproducible per (seed, sensor)."""

from __future__ import annotations

import statistics

from sensorpipe.producer.sensors import KINDS, SPIKE_P, Fleet, kind_of

T = 1_795_000_000.0  # a fixed epoch second: the daily cycle is held still


def _series(fleet: Fleet, slot: int, n: int) -> list[float]:
    size = len(fleet)
    out = []
    for _ in range(n):  # the fleet's round-robin: every sensor draws in turn, as in the producer
        for s in range(size):
            v = fleet.reading(s, T)
            if s == slot:
                out.append(v)
    return out


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
    fleet.resize(1)
    kind = KINDS[0]
    values = [fleet.reading(0, T) for _ in range(200_000)]
    med = statistics.median(values)
    up = sum(v - med > kind.spike / 2 for v in values)
    down = sum(med - v > kind.spike / 2 for v in values)
    expected = SPIKE_P * len(values)  # 100
    assert 0.5 * expected < up + down < 1.5 * expected
    assert up > down


def test_same_seed_same_signal_other_seed_other_signal() -> None:
    a, b, c = Fleet(seed=3), Fleet(seed=3), Fleet(seed=4)
    for f in (a, b, c):
        f.resize(50)
    ra = [a.reading(i % 50, T) for i in range(2000)]
    rb = [b.reading(i % 50, T) for i in range(2000)]
    rc = [c.reading(i % 50, T) for i in range(2000)]
    assert ra == rb
    assert ra != rc
