"""The compactor's loop: every pass compacts the closed days that hold raw rows, oldest first.

A day is closed when it is older than the grace period by the pipeline's clock (the current
and the previous UTC day stay hot by default): the consumer's writer checks late rows against
the chunks of every day before its own current day, so one day of grace also covers a writer
whose clock is a day behind (docs/decisions/011-compacted-days.md). Each day is one
transaction (storage.compaction.compact_day), then its emptied partition is given back to the
disk. A failed pass is logged and retried at the next; nothing of a failed day remains.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from sensorpipe.storage import compaction

log = logging.getLogger("sensorpipe.compactor")


@dataclass
class Totals:
    """What the compactor has done since it started (its /metrics and log)."""

    days: int = 0
    events: int = 0
    bytes: int = 0
    cpu_s: float = 0.0
    errors: int = 0
    backlog: int = 0  # closed days holding raw rows after the last pass


class Compactor:
    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        clock: Callable[[], float],
        grace_days: int = 1,
        trim: Callable[[], object] | None = None,
    ) -> None:
        self.connect = connect
        self.clock = clock
        self.grace_days = grace_days
        # Hands the memory a day's compaction freed back to the system (glibc keeps freed
        # blocks in its arenas otherwise, and the compactor's resident set would only grow).
        self.trim = trim
        self.totals = Totals()

    def closed_before(self) -> date:
        """Days before this one are closed."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        return today - timedelta(days=self.grace_days)

    def run_pass(self, stop: threading.Event | None = None) -> list[compaction.Compacted]:
        """Compact every closed day that holds raw rows; what was compacted."""
        done: list[compaction.Compacted] = []
        with self.connect() as conn:
            conn.autocommit = True
            for day in compaction.pending_days(conn, self.closed_before()):
                if stop is not None and stop.is_set():
                    break
                cpu = time.process_time()
                result = compaction.compact(conn, day)
                if result is None:
                    continue
                self._count(result, time.process_time() - cpu)
                done.append(result)
                if self.trim is not None:
                    self.trim()
            self.totals.backlog = len(compaction.pending_days(conn, self.closed_before()))
        return done

    def _count(self, result: compaction.Compacted, cpu_s: float) -> None:
        t = self.totals
        t.days += 1
        t.events += result.events
        t.bytes += result.bytes
        t.cpu_s += cpu_s
        log.info(
            "compacted %s part %d: %d events in %d chunks, %d bytes (%.1f per event)",
            result.day,
            result.part,
            result.events,
            result.chunks,
            result.bytes,
            result.bytes / max(result.events, 1),
        )

    def run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                self.run_pass(stop)
            except psycopg.Error as e:
                self.totals.errors += 1
                log.warning("compaction pass failed, retried in %.0f s: %s", interval_s, e)
            stop.wait(interval_s)
