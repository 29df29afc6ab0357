"""Prometheus metrics of one producer process, in a registry of its own (no globals).

The engine counts in plain ints on its hot path; `sync` moves the deltas into Prometheus
twice a second, so a metric update never costs a lock per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class Counts:
    """The engine's own tally, in plain ints (see the module's docstring)."""

    produced: int = 0
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    duplicates_sent: int = 0
    poison_sent: int = 0
    queue_full_waits: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.produced = Counter("sensorpipe_producer_produced", "Messages handed to librdkafka", registry=r)
        self.acked = Counter("sensorpipe_producer_acked", "Messages acknowledged by the broker", registry=r)
        self.failed = Counter("sensorpipe_producer_failed", "Messages that failed delivery", registry=r)
        self.unknown = Counter("sensorpipe_producer_unknown", "Messages timed out in flight", registry=r)
        self.duplicates = Counter("sensorpipe_producer_duplicates_sent", "Deliberate duplicates", registry=r)
        self.poison = Counter("sensorpipe_producer_poison_sent", "Deliberate poison messages", registry=r)
        self.queue = Gauge("sensorpipe_producer_queue_depth", "Messages in librdkafka's queue", registry=r)
        self.configured_rate = Gauge("sensorpipe_producer_configured_rate", "Target events/s", registry=r)
        self.actual_rate = Gauge("sensorpipe_producer_actual_rate", "Acked events/s, last interval", registry=r)
        self._last: dict[str, int] = {}
        self._last_t: float | None = None
        self._last_acked = 0

    def sync(self, c: Counts, queue_depth: int, now: float) -> None:
        for name, metric in (
            ("produced", self.produced),
            ("acked", self.acked),
            ("failed", self.failed),
            ("unknown", self.unknown),
            ("duplicates_sent", self.duplicates),
            ("poison_sent", self.poison),
        ):
            value = getattr(c, name)
            metric.inc(value - self._last.get(name, 0))
            self._last[name] = value
        self.queue.set(queue_depth)
        if self._last_t is not None and now > self._last_t:
            self.actual_rate.set((c.acked - self._last_acked) / (now - self._last_t))
        self._last_t, self._last_acked = now, c.acked
