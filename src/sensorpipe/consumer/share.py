"""Keeping the store inside its share of the disk budget (size retention, consumer side).

Every `check_s`, `SizeRetention.run()` drops the oldest raw days (then 1-minute rollup
days) once the database's files pass the high-water mark (guard.HighWater), logs and counts
each drop, and tells the disk guard when nothing before today is left to drop, so that
consumption holds until space is freed or the share grows.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import psycopg

from sensorpipe.consumer.guard import DiskGuard, HighWater
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.contracts.disk import human
from sensorpipe.storage import retention

log = logging.getLogger("sensorpipe.consumer")


class SizeRetention:
    def __init__(self, share: int, check_s: float, guard: DiskGuard, metrics: ConsumerMetrics) -> None:
        self.share = share
        self.check_s = check_s
        self.guard = guard
        self.metrics = metrics
        self._high_water = HighWater(check_s)
        self._next = 0.0

    def due(self, now: float) -> bool:
        return now >= self._next

    def run(self, now: float, conn: psycopg.Connection[Any], today: date) -> None:
        """One pass on `conn` (autocommit); a database error propagates, and the next pass
        is still `check_s` away."""
        self._next = now + self.check_s
        mark = self._high_water.mark(self.share)
        r = retention.enforce(conn, self.share, today, mark)
        self._high_water.observe(now, r.found_bytes, r.store_bytes)
        for d in r.drops:
            log.warning(
                "size retention: dropped %s day %s (about %d rows, %s): the store held %s, over its "
                "high-water mark of %s (share %s)",
                "raw" if d.tier == "raw" else "1-minute rollup",
                d.day,
                d.rows,
                human(d.bytes),
                human(r.found_bytes),
                human(mark),
                human(r.share),
            )
            self.metrics.retention_drops.labels(reason="size", tier=d.tier).inc()
            self.metrics.retention_rows.labels(reason="size", tier=d.tier).inc(d.rows)
        self.metrics.store_bytes.set(r.store_bytes)
        self.guard.over_budget = (
            f"the store holds {human(r.store_bytes)}, over its share of {human(r.share)}, with nothing before "
            f"today left to drop but hourly rollups"
            if r.over
            else None
        )
