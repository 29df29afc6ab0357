"""Wiring of the `sensorpipe producer` process (and of its worker processes)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from sensorpipe.producer.engine import ConfigPoller, ProducerEngine, config_from_settings
from sensorpipe.producer.ledger import Ledger
from sensorpipe.producer.metrics import ProducerMetrics
from sensorpipe.runtime.process import configure_logging, serve_metrics, stop_on_signals
from sensorpipe.settings import ClockSettings, KafkaSettings, ProducerSettings

log = logging.getLogger("sensorpipe.producer")


def run_producer(
    settings: ProducerSettings,
    kafka: KafkaSettings,
    state_dir: Path,
    ledger_path: Path | None,
    duration_s: float | None,
    shard: int | None,
    argv: list[str],
) -> int:
    configure_logging()
    if settings.workers > 1 and shard is None:
        return _run_workers(settings.workers, argv)
    index, shards = (shard, settings.workers) if shard is not None else (0, 1)
    stop = stop_on_signals()
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True  # a stop by signal must not wait for the timer
        timer.start()
    metrics = ProducerMetrics()
    port = settings.metrics_port + index if settings.metrics_port else 0
    serve_metrics(metrics.registry, port, "producer", settings.metrics_host)
    ledger = None
    if ledger_path is not None:
        ledger = Ledger(ledger_path if shards == 1 else ledger_path.with_name(f"{ledger_path.name}.{index}"))
    poller = None
    if settings.api_url:
        poller = ConfigPoller(settings.api_url, settings.config_poll_s, config_from_settings(settings))
    engine = ProducerEngine(settings, kafka, state_dir, metrics, index, shards, ledger, poller, ClockSettings().clock())
    log.info(
        "producing to %s at %.0f events/s from %d sensors (shard %d of %d)",
        kafka.topic,
        engine.config.rate,
        engine.config.sensors,
        index,
        shards,
    )
    console = Console(stderr=True)
    if console.is_terminal and shard is None:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            return engine.run(stop, on_tick=lambda e: live.update(_progress_line(e)))
    last_log = [0.0]

    def log_tick(e: ProducerEngine) -> None:
        now = time.monotonic()
        if now - last_log[0] >= 10:
            last_log[0] = now
            log.info("%s", _progress_line(e))

    return engine.run(stop, on_tick=log_tick)


def _progress_line(e: ProducerEngine) -> str:
    c = e.counts
    rate = e.metrics.actual_rate._value.get()
    return (
        f"rate {rate:,.0f}/s (target {e.config.rate:,.0f})  total {c.acked:,} acked  "
        f"errors {c.failed + c.unknown:,}  queue {len(e.producer):,}  dups {c.duplicates_sent:,}  "
        f"poison {c.poison_sent:,}"
    )


def _run_workers(workers: int, argv: list[str]) -> int:
    """One process per shard; a sensor always belongs to one shard, so its order holds."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "sensorpipe", "producer", *argv, "--shard", str(i)])
        for i in range(workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return max(p.wait() for p in procs)
