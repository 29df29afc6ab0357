"""Prometheus metrics of one consumer process, in a registry of its own (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sensorpipe.runtime.memory import HeapStats

if TYPE_CHECKING:
    from sensorpipe.consumer.decode import Batch
    from sensorpipe.storage.batch import BatchResult


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.consumed = Counter("sensorpipe_consumer_consumed", "Messages consumed", registry=r)
        self.stored = Counter("sensorpipe_consumer_stored", "Events newly stored", registry=r)
        self.duplicates = Counter("sensorpipe_consumer_duplicates", "Duplicate events ignored", registry=r)
        self.redeliveries = Counter("sensorpipe_consumer_redeliveries", "Offsets consumed again", registry=r)
        self.known_positions = Counter(
            "sensorpipe_consumer_known_positions",
            "Messages at positions recorded as processed: redeliveries counted without decoding",
            registry=r,
        )
        self.conflicts = Counter("sensorpipe_consumer_conflicts", "Reused event ids, other content", registry=r)
        self.dlq = Counter("sensorpipe_consumer_dlq", "Messages dead-lettered", ["reason"], registry=r)
        self.retries = Counter("sensorpipe_consumer_batch_retries", "Batches retried after an outage", registry=r)
        self.commit_skipped = Counter(
            "sensorpipe_consumer_commit_skipped",
            "Offset stores or background commits that failed (redelivery, never loss)",
            registry=r,
        )
        self.rejoins = Counter(
            "sensorpipe_consumer_group_rejoins",
            "Kafka consumers replaced because their group membership did not come back by itself",
            registry=r,
        )
        self.memory_released = Counter(
            "sensorpipe_consumer_memory_released_bytes",
            "Resident memory the C allocator held free and gave back to the system (runtime.memory)",
            registry=r,
        )
        self.fetch_queue_bytes = Gauge(
            "sensorpipe_consumer_fetch_queue_bytes",
            "Bytes librdkafka has fetched ahead of the batch loop, over our partitions",
            registry=r,
        )
        self.batch_size = Histogram(
            "sensorpipe_consumer_batch_size",
            "Messages per batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sensorpipe_consumer_batch_seconds", "DLQ + database transaction time per batch", registry=r
        )
        self.commit_seconds = Histogram("sensorpipe_consumer_commit_seconds", "Offset store time", registry=r)
        self.lag = Gauge("sensorpipe_consumer_lag", "Consumer lag in messages", ["partition"], registry=r)
        self.assigned = Gauge("sensorpipe_consumer_assigned_partitions", "Partitions assigned", registry=r)
        self.slowdown_ms = Gauge("sensorpipe_consumer_slowdown_ms", "Effective slowdown knob", registry=r)
        self.paused = Gauge(
            "sensorpipe_consumer_paused", "1 while consumption is paused to protect the disk", registry=r
        )
        self.free_bytes = Gauge(
            "sensorpipe_consumer_disk_free_bytes", "Least free space on the watched filesystems", registry=r
        )
        self.store_bytes = Gauge(
            "sensorpipe_consumer_store_bytes", "The database's files, as size retention measured them", registry=r
        )
        self.retention_drops = Counter(
            "sensorpipe_consumer_retention_drops",
            "Days dropped by retention, by reason (time, size) and tier (raw, 1m)",
            ["reason", "tier"],
            registry=r,
        )
        self.retention_rows = Counter(
            "sensorpipe_consumer_retention_rows",
            "Rows dropped by retention (estimated), by reason and tier",
            ["reason", "tier"],
            registry=r,
        )

    def watch_heap(self, read: Callable[[], HeapStats] | None) -> None:
        """Publish `read()` (runtime.memory.libc_mallinfo), read once per scrape, as
        sensorpipe_consumer_heap_bytes{state} and sensorpipe_consumer_python_blocks; None
        publishes nothing."""
        if read is not None:
            self.registry.register(_HeapCollector(read))

    def observe_batch(self, batch: Batch, r: BatchResult, write_s: float, commit_s: float) -> None:
        """A batch written and its offsets stored."""
        self.consumed.inc(batch.consumed)
        self.stored.inc(r.stored)
        self.duplicates.inc(r.duplicates)
        self.redeliveries.inc(r.redeliveries)
        self.known_positions.inc(sum(batch.known.values()))
        self.conflicts.inc(r.conflicts)
        for d in batch.dead:
            self.dlq.labels(reason=d.reason).inc()
        self.batch_size.observe(batch.consumed)
        self.batch_seconds.observe(write_s)
        self.commit_seconds.observe(commit_s)


class _HeapCollector(Collector):
    """The heap gauges, from one read of the allocators per scrape."""

    def __init__(self, read: Callable[[], HeapStats]) -> None:
        self.read = read

    def collect(self) -> list[Metric]:
        h = self.read()
        heap = GaugeMetricFamily(
            "sensorpipe_consumer_heap_bytes",
            "malloc's bytes by state: in_use, free (held inside its arenas) and mapped (large chunks, "
            "also counted in in_use); read when scraped",
            labels=["state"],
        )
        heap.add_metric(["in_use"], h.malloc_in_use)
        heap.add_metric(["free"], h.malloc_free)
        heap.add_metric(["mapped"], h.malloc_mapped)
        blocks = GaugeMetricFamily(
            "sensorpipe_consumer_python_blocks",
            "Python object blocks allocated; read when scraped",
            value=h.python_blocks,
        )
        return [heap, blocks]
