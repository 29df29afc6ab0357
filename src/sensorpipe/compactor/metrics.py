"""The compactor's Prometheus metrics, read from its running totals at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sensorpipe.compactor.service import Totals


class _TotalsCollector(Collector):
    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self.totals
        yield CounterMetricFamily("sensorpipe_compactor_days", "Day parts compacted.", value=t.days)
        yield CounterMetricFamily("sensorpipe_compactor_events", "Events compacted into chunks.", value=t.events)
        yield CounterMetricFamily(
            "sensorpipe_compactor_bytes", "Bytes of chunks and id directories written.", value=t.bytes
        )
        yield CounterMetricFamily(
            "sensorpipe_compactor_cpu_seconds", "Compactor CPU time spent compacting.", value=t.cpu_s
        )
        yield CounterMetricFamily("sensorpipe_compactor_errors", "Compaction passes that failed.", value=t.errors)
        yield GaugeMetricFamily(
            "sensorpipe_compactor_backlog_days",
            "Closed days still holding raw rows after the last pass.",
            value=t.backlog,
        )


class CompactorMetrics:
    def __init__(self, totals: Totals) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_TotalsCollector(totals))
