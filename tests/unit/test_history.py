"""The overview's history and alarms (api.history), with the monitor, store and clock injected."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sensorpipe.api.disk import Alarm as DiskAlarm
from sensorpipe.api.disk import DiskStatus
from sensorpipe.api.history import PipelineHistory, StoreReading
from sensorpipe.runtime.pipeline import Member, PartitionLag, Sample


@dataclass
class World:
    """What the recorder reads, set by each test between ticks."""

    now: float = 1000.0
    highs: list[int] = field(default_factory=lambda: [0, 0, 0])
    committed: list[int] = field(default_factory=lambda: [0, 0, 0])
    dlq_end: int = 0
    members: int = 1
    stalled: set[int] = field(default_factory=set)
    error: str | None = None
    store: StoreReading | None = field(default_factory=lambda: StoreReading(0, 0, None, 0, []))
    disk: DiskStatus | None = None
    sinces: list[float] = field(default_factory=list)

    def sample(self) -> Sample:
        parts = [
            PartitionLag(p, hi, c, hi - c, float(hi - c) / 100, p in self.stalled)
            for p, (hi, c) in enumerate(zip(self.highs, self.committed, strict=True))
        ]
        members = [Member(f"m{i}", "c", "h", [0, 1, 2]) for i in range(self.members)]
        lag = sum(p.lag for p in parts)
        return Sample(
            self.now, "t", "g", parts, lag, "stable", members, 0, None, None, None, [], None, self.error, self.dlq_end
        )

    def read_store(self, since: float) -> StoreReading | None:
        self.sinces.append(since)
        return self.store

    def history(self, keep_s: float = 900.0) -> PipelineHistory:
        return PipelineHistory(self.sample, self.read_store, lambda: self.disk, 2.0, keep_s, lambda: self.now)


def _advance(w: World, produced: int, stored: int, dead: int = 0, dups: int = 0) -> None:
    w.now += 2.0
    w.highs = [h + produced // 3 for h in w.highs]
    w.committed = [c + stored // 3 for c in w.committed]
    w.dlq_end += dead
    assert w.store is not None
    w.store = replace(w.store, stored=w.store.stored + stored, duplicates=w.store.duplicates + dups)


def test_rates_come_from_the_counters_between_points() -> None:
    w = World()
    h = w.history()
    first = h.tick()
    assert first.produced_per_s is None  # no earlier point to compare with
    _advance(w, produced=300, stored=240, dead=4, dups=6)
    p = h.tick()
    assert p.produced_per_s == 150 and p.stored_per_s == 120
    assert p.dead_lettered_per_s == 2 and p.duplicates_per_s == 3
    assert p.lag == {0: 20, 1: 20, 2: 20} and p.lag_s == {0: 0.2, 1: 0.2, 2: 0.2}
    assert w.sinces[-1] == 1000.0, "freshness is asked for what was stored since the last point"


def test_a_counter_that_goes_back_has_no_rate() -> None:
    w = World()
    h = w.history()
    _advance(w, 300, 300)
    h.tick()
    w.now += 2.0
    w.highs = [0, 0, 0]  # the topic was recreated
    p = h.tick()
    assert p.produced_per_s is None
    assert p.stored_per_s == 0


def test_an_unreachable_broker_or_store_leaves_gaps_not_zeros() -> None:
    w = World()
    h = w.history()
    h.tick()
    _advance(w, 300, 300)
    w.error, w.store = "broker down", None
    p = h.tick()
    assert p.produced_per_s is None and p.stored_per_s is None and p.lag == {}


def test_the_ring_is_bounded_whatever_the_uptime() -> None:
    w = World()
    h = w.history(keep_s=10.0)
    for _ in range(50):
        _advance(w, 30, 30)
        h.tick()
    points = h.window(10_000, 1000).points
    assert len(points) == 5
    assert points[-1].at == w.now


def test_a_window_merges_points_into_buckets_keeping_the_worst_lag_and_p99() -> None:
    w = World()
    h = w.history()
    for i in range(10):
        _advance(w, 30, 30)
        assert w.store is not None
        w.store = replace(w.store, freshness_ms=(10.0 + i, 100.0 * (i + 1)))
        w.highs[1] += 1000 if i == 4 else 0  # one spike of lag on partition 1
        h.tick()
    win = h.window(3600, 3)
    assert win.step_s == 8.0 and len(win.points) == 3
    first = win.points[0]  # points 0..3
    assert first.freshness_p99_ms == 400.0 and first.freshness_p50_ms == 11.5
    assert win.points[1].lag[1] >= 1000  # the spike is kept, not averaged away
    assert [p.at for p in win.points] == sorted(p.at for p in win.points)
    assert h.window(3, 300).points == h.window(3600, 300).points[-2:], "only the last seconds asked for"


def test_alarms_name_what_needs_an_operator_critical_first() -> None:
    w = World()
    w.highs, w.committed, w.stalled = [50, 0, 0], [0, 0, 0], {0}
    w.store = StoreReading(0, 0, None, 3, ["s-9", "s-1", "s-4"])
    w.disk = DiskStatus(0, True, 1, 1, {}, {}, 0, 0, [DiskAlarm("near_budget", "PostgreSQL at 92%")], {})
    h = w.history()
    h.tick()
    kinds = [(a.kind, a.severity) for a in h.alarms()]
    assert kinds == [
        ("stalled_partitions", "critical"),
        ("silent_sensors", "warning"),
        ("disk_near_budget", "warning"),
    ]
    assert "s-9, s-1, s-4" in h.alarms()[1].detail
    w.members = 0
    assert ("no_consumer", "critical") in [(a.kind, a.severity) for a in h.alarms()]


def test_an_unreachable_kafka_or_store_is_an_alarm() -> None:
    w = World()
    w.error, w.store = "all brokers down", None
    h = w.history()
    h.tick()
    assert {a.kind for a in h.alarms()} == {"kafka_unreachable", "store_unreachable"}
    w.error = None
    w.now += 60  # the monitor's last sample stays where it was taken
    stale = w.sample()
    h2 = PipelineHistory(lambda: replace(stale, at=w.now - 60), w.read_store, lambda: None, 2.0, 900, lambda: w.now)
    assert next(a.kind for a in h2.alarms()) == "kafka_unreachable"


def test_the_dead_letter_alarm_fires_above_its_share_of_the_load() -> None:
    w = World()
    h = w.history()
    h.tick()
    for _ in range(10):
        _advance(w, produced=3000, stored=3000, dead=3)  # 0.1%: poison at the demo's rate
        h.tick()
    assert h.alarms() == []
    for _ in range(10):
        _advance(w, produced=3000, stored=3000, dead=90)  # 3%
        h.tick()
    (alarm,) = h.alarms()
    assert alarm.kind == "dead_letter_rate" and "of produced" in alarm.detail
