"""The pipeline's recent history and its alarms, for the overview.

A recorder thread takes a point every `interval_s`: the rates of what was produced, stored,
ignored as a duplicate and dead-lettered (from counter deltas between points), the store's
freshness (event to stored, p50 and p99), and each partition's lag in messages and seconds
(from the pipeline monitor's latest sample). Points live in a ring of `keep_s / interval_s`
entries, so memory is fixed whatever the uptime. `window` returns them column by column,
merged into at most `max_points` buckets; `alarms` judges the latest state.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sensorpipe.api.disk import DiskStatus
from sensorpipe.api.sampler import Sampler
from sensorpipe.runtime.pipeline import Sample

Severity = Literal["critical", "warning"]
# Dead letters over the last DLQ_WINDOW_S raise an alarm above this share of what was
# produced in it, and above DLQ_MIN of them (a lone poison message is not an incident).
DLQ_WINDOW_S = 60.0
DLQ_SHARE = 0.01
DLQ_MIN = 10


@dataclass(frozen=True)
class StoreReading:
    """What the store said at one instant."""

    stored: int
    duplicates: int
    freshness_ms: tuple[float, float] | None  # p50, p99 of the events stored since the last reading
    silent: int  # sensors silent for several times their usual interval
    silent_examples: list[str]


@dataclass(frozen=True)
class Point:
    at: float
    produced_per_s: float | None
    stored_per_s: float | None
    duplicates_per_s: float | None
    dead_lettered_per_s: float | None
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    lag: dict[int, int]
    lag_s: dict[int, float]


@dataclass(frozen=True)
class Window:
    step_s: float
    points: list[Point]  # oldest first, merged into buckets of `step_s`


@dataclass(frozen=True)
class Alarm:
    kind: str
    severity: Severity
    detail: str


@dataclass(frozen=True)
class _Totals:
    at: float
    produced: int | None
    stored: int | None
    duplicates: int | None
    dead_lettered: int | None


def _rate(now: int | None, before: int | None, dt: float) -> float | None:
    """A counter's rate, or None where either end is unknown or it went back (a reset)."""
    if now is None or before is None or dt <= 0 or now < before:
        return None
    return (now - before) / dt


class PipelineHistory:
    def __init__(
        self,
        sample: Callable[[], Sample | None],
        read_store: Callable[[float], StoreReading | None],
        disk: Callable[[], DiskStatus | None],
        interval_s: float = 2.0,
        keep_s: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sample`: the pipeline monitor's latest; `read_store(since)`: the store's counters,
        with freshness over what was stored after `since` (epoch s), or None if unreachable;
        `disk`: the disk watch's latest."""
        self.sample, self.read_store, self.disk = sample, read_store, disk
        self.interval_s, self.keep_s, self.clock = interval_s, keep_s, clock
        self._points: deque[Point] = deque(maxlen=max(2, math.ceil(keep_s / interval_s)))
        self._lock = threading.Lock()
        self._prev: _Totals | None = None
        self._store: StoreReading | None = None
        self._sampler = Sampler("pipeline-history", interval_s, self.tick)

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()

    def tick(self) -> Point:
        """Take one point (the recorder thread's step; tests call it directly)."""
        now = self.clock()
        s = self.sample()
        live = s if s is not None and s.error is None else None  # a sample to take figures from
        parts = live.partitions if live is not None else []
        since = self._prev.at if self._prev is not None else now - self.interval_s
        store = self._store = self.read_store(since)
        totals = _Totals(
            now,
            sum(p.high_watermark for p in parts) if live is not None else None,
            store.stored if store is not None else None,
            store.duplicates if store is not None else None,
            live.dlq_end if live is not None else None,
        )
        prev, self._prev = self._prev, totals
        b = prev or totals
        dt = now - b.at
        fresh = store.freshness_ms if store is not None else None
        point = Point(
            at=now,
            produced_per_s=_rate(totals.produced, b.produced, dt),
            stored_per_s=_rate(totals.stored, b.stored, dt),
            duplicates_per_s=_rate(totals.duplicates, b.duplicates, dt),
            dead_lettered_per_s=_rate(totals.dead_lettered, b.dead_lettered, dt),
            freshness_p50_ms=fresh[0] if fresh else None,
            freshness_p99_ms=fresh[1] if fresh else None,
            lag={p.partition: p.lag for p in parts},
            lag_s={p.partition: p.lag_seconds for p in parts},
        )
        with self._lock:
            self._points.append(point)
        return point

    def window(self, seconds: float, max_points: int) -> Window:
        """The points of the last `seconds`, merged into at most `max_points` buckets."""
        start = self.clock() - seconds
        with self._lock:
            points = [p for p in self._points if p.at >= start]
        per = max(1, math.ceil(len(points) / max(1, max_points)))
        merged = [_merge(points[i : i + per]) for i in range(0, len(points), per)]
        return Window(step_s=per * self.interval_s, points=merged)

    def alarms(self) -> list[Alarm]:
        """What needs an operator now, worst first."""
        s, store, disk = self.sample(), self._store, self.disk()
        out = _pipeline_alarms(s, self.clock(), self.interval_s)
        if store is None:
            out.append(Alarm("store_unreachable", "critical", "the database did not answer the last reading"))
        elif store.silent:
            names = ", ".join(store.silent_examples)
            out.append(Alarm("silent_sensors", "warning", f"{store.silent} sensor(s) silent, longest first: {names}"))
        out += self._dlq_alarm()
        if disk is not None:
            out += [
                Alarm(f"disk_{a.kind}", "warning" if a.kind == "near_budget" else "critical", a.detail)
                for a in disk.alarms
            ]
        return sorted(out, key=lambda a: a.severity != "critical")

    def _dlq_alarm(self) -> list[Alarm]:
        with self._lock:
            recent = [p for p in self._points if p.at >= self.clock() - DLQ_WINDOW_S]
        dead = sum((p.dead_lettered_per_s or 0) for p in recent) * self.interval_s
        produced = sum((p.produced_per_s or 0) for p in recent) * self.interval_s
        if dead <= max(DLQ_MIN, DLQ_SHARE * produced):
            return []
        share = f" ({dead / produced:.1%} of produced)" if produced else ""
        return [Alarm("dead_letter_rate", "warning", f"{dead:,.0f} dead-lettered in the last minute{share}")]


def _pipeline_alarms(s: Sample | None, now: float, interval_s: float) -> list[Alarm]:
    if s is None:
        return [Alarm("kafka_unreachable", "critical", "no sample of the pipeline yet")]
    if s.error is not None:
        return [Alarm("kafka_unreachable", "critical", f"the last sample of Kafka failed: {s.error[:160]}")]
    out = []
    if now - s.at > max(15.0, 5 * interval_s):
        out.append(Alarm("kafka_unreachable", "critical", f"the last sample of Kafka is {now - s.at:.0f} s old"))
    if s.stalled:
        out.append(
            Alarm(
                "stalled_partitions",
                "critical",
                f"partitions {', '.join(map(str, s.stalled))}: messages wait and the committed offset has not moved",
            )
        )
    if s.total_lag > 0 and not s.members:
        out.append(Alarm("no_consumer", "critical", f"{s.total_lag:,} messages wait and the group has no member"))
    return out


def _merge(bucket: list[Point]) -> Point:
    """One point for a bucket: mean rates and p50, the worst p99 and the worst lag of each partition."""

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    lag: dict[int, int] = {}
    lag_s: dict[int, float] = {}
    for p in bucket:
        for k, v in p.lag.items():
            lag[k] = max(lag.get(k, 0), v)
        for k, f in p.lag_s.items():
            lag_s[k] = max(lag_s.get(k, 0.0), f)
    return Point(
        at=bucket[-1].at,
        produced_per_s=mean([p.produced_per_s for p in bucket]),
        stored_per_s=mean([p.stored_per_s for p in bucket]),
        duplicates_per_s=mean([p.duplicates_per_s for p in bucket]),
        dead_lettered_per_s=mean([p.dead_lettered_per_s for p in bucket]),
        freshness_p50_ms=mean([p.freshness_p50_ms for p in bucket]),
        freshness_p99_ms=worst([p.freshness_p99_ms for p in bucket]),
        lag=lag,
        lag_s=lag_s,
    )
