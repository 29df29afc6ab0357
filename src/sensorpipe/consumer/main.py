"""Wiring of the `sensorpipe consumer` process."""

from __future__ import annotations

from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.service import ConsumerService
from sensorpipe.runtime.process import configure_logging, serve_metrics, stop_on_signals
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings


def run_consumer(consumer: ConsumerSettings, kafka: KafkaSettings, db: DatabaseSettings) -> None:
    configure_logging()
    stop = stop_on_signals()
    metrics = ConsumerMetrics()
    serve_metrics(metrics.registry, consumer.metrics_port, "consumer", consumer.metrics_host)
    ConsumerService(kafka, consumer, db, metrics).run(stop)
