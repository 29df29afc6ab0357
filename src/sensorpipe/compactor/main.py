"""Wiring of the `sensorpipe compactor` process."""

from __future__ import annotations

from functools import partial

import psycopg

from sensorpipe.compactor.metrics import CompactorMetrics
from sensorpipe.compactor.service import Compactor
from sensorpipe.runtime.memory import libc_trim
from sensorpipe.runtime.process import configure_logging, serve_metrics, stop_on_signals
from sensorpipe.settings import ClockSettings, CompactorSettings, DatabaseSettings

APPLICATION_NAME = "sensorpipe-compactor"


def run_compactor(settings: CompactorSettings, db: DatabaseSettings, clock: ClockSettings) -> None:
    configure_logging()
    stop = stop_on_signals()
    connect = partial(psycopg.connect, db.dsn(), connect_timeout=5, application_name=APPLICATION_NAME)
    compactor = Compactor(connect, clock.clock(), settings.grace_days, trim=libc_trim())
    metrics = CompactorMetrics(compactor.totals)
    serve_metrics(metrics.registry, settings.metrics_port, "compactor", settings.metrics_host)
    compactor.run(stop, settings.interval_s)
