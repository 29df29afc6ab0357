"""Wiring of the `sensorpipe consumer` process."""

from __future__ import annotations

from sensorpipe.consumer.guard import DiskGuard
from sensorpipe.consumer.hooks import hooks_for
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.parts import kafka_parts
from sensorpipe.consumer.service import ConsumerService
from sensorpipe.runtime.memory import libc_mallinfo
from sensorpipe.runtime.process import configure_logging, freeze_startup_heap, serve_metrics, stop_on_signals
from sensorpipe.settings import ClockSettings, ConsumerSettings, DatabaseSettings, DiskSettings, KafkaSettings


def run_consumer(
    consumer: ConsumerSettings, kafka: KafkaSettings, db: DatabaseSettings, disk: DiskSettings, clock: ClockSettings
) -> None:
    configure_logging()
    stop = stop_on_signals()
    metrics = ConsumerMetrics()
    metrics.watch_heap(libc_mallinfo())
    serve_metrics(metrics.registry, consumer.metrics_port, "consumer", consumer.metrics_host)
    guard = DiskGuard(watch=list(disk.watch), floor=disk.floor, check_s=disk.check_s)
    service = ConsumerService(
        kafka,
        consumer,
        db,
        metrics,
        clock=clock.clock(),
        guard=guard,
        store_share=disk.postgres_bytes,
        size_check_s=disk.size_check_s,
        parts=kafka_parts(kafka, consumer, db),
        hooks=hooks_for(consumer),
    )
    freeze_startup_heap()
    service.run(stop)
