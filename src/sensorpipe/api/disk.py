"""The disk budget as operators see it: shares, use, free space, alarms and retention drops.

A sampler thread measures every `interval_s` (walking the state folder is disk I/O that no
request should wait on) and `GET /api/pipeline` returns its latest sample under `disk`. The alarms follow
the consumer's own rules (contracts.disk, consumer.guard): under the floor it pauses; over
PostgreSQL's share with only today's rows left it pauses too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from psycopg_pool import PoolTimeout

from sensorpipe.api.sampler import Sampler
from sensorpipe.contracts import disk as local_disk
from sensorpipe.contracts.disk import check_floor, human
from sensorpipe.storage import retention

log = logging.getLogger("sensorpipe.api.disk")

# Share of a budget at which the "near" alarm shows (size retention starts at its high-water
# mark, consumer.guard.HighWater, a little under 100%).
NEAR = 0.9


@dataclass(frozen=True)
class Alarm:
    kind: str  # floor | over_budget | near_budget
    detail: str


@dataclass(frozen=True)
class DiskStatus:
    at: float
    managed: bool  # a budget plan exists (the local stack); otherwise only the store is measured
    budget_bytes: int | None
    floor_bytes: int | None
    shares: dict[str, int]
    used: dict[str, int]
    store_bytes: int | None  # the database's files (what size retention keeps inside its share)
    free_bytes: int | None
    alarms: list[Alarm]
    drops: dict[str, dict[str, int]]  # reason -> {days, rows}
    recent_drops: list[dict[str, Any]] = field(default_factory=list)
    raw_horizon: datetime | None = None  # raw rows are kept from here (size retention moved it)
    minute_horizon: datetime | None = None  # and the 1-minute rollups from here


@dataclass(frozen=True)
class _Store:
    size: int | None
    drops: dict[str, dict[str, int]]
    recent: list[dict[str, Any]]
    raw_horizon: datetime | None
    minute_horizon: datetime | None


class DiskWatch:
    def __init__(
        self,
        state_dir: Path | None,
        connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        registry: CollectorRegistry,
        floor: str | None = None,
        interval_s: float = 10.0,
    ) -> None:
        self.state_dir = state_dir
        self.floor = floor  # as the consumer's guard reads it (SENSORPIPE_DISK_FLOOR)
        self.connect = connect
        self.interval_s = interval_s
        self.latest: DiskStatus | None = None
        self._sampler = Sampler("disk-watch", interval_s, self._step)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(f"sensorpipe_{name}", doc, list(labels), registry=registry)

        self._g_budget = gauge("disk_budget_bytes", "The disk budget in effect")
        self._g_floor = gauge("disk_floor_bytes", "The free-space floor")
        self._g_free = gauge("disk_free_bytes", "Least free space on the watched filesystems")
        self._g_used = gauge("disk_used_bytes", "Bytes on disk by component", "component")
        self._g_share = gauge("disk_share_bytes", "Each component's share of the budget", "component")
        self._g_alarm = gauge("disk_alarm", "1 while a disk alarm holds", "kind")
        self._g_drops = gauge("retention_drops", "Raw days dropped by retention", "reason")
        for kind in ("floor", "over_budget", "near_budget"):
            self._g_alarm.labels(kind=kind).set(0)

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()

    def _step(self) -> None:
        self.latest = self.sample()
        self._export(self.latest)

    def sample(self) -> DiskStatus:
        planned = local_disk.read_plan(self.state_dir) if self.state_dir is not None else None
        st = self._store()
        if planned is None:
            return DiskStatus(
                at=time.time(),
                managed=False,
                budget_bytes=None,
                floor_bytes=None,
                shares={},
                used={},
                store_bytes=st.size,
                free_bytes=None,
                alarms=[],
                drops=st.drops,
                recent_drops=st.recent,
                raw_horizon=st.raw_horizon,
                minute_horizon=st.minute_horizon,
            )
        plan, watch, pg_data = planned
        assert self.state_dir is not None
        used = local_disk.usage(self.state_dir, pg_data)
        alarms, free = self._floor_alarms(watch)
        shares = {"kafka": plan.kafka, "postgres": plan.postgres, "logs": plan.logs}
        pg_used = used.postgres if pg_data is not None else (st.size or 0)  # the data folder, WAL included
        live = {"kafka": used.kafka, "postgres": pg_used, "logs": used.logs}
        alarms += _budget_alarms(shares, live)
        return DiskStatus(
            at=time.time(),
            managed=True,
            budget_bytes=plan.effective,
            floor_bytes=plan.floor,
            shares=shares,
            used={"kafka": used.kafka, "postgres": used.postgres, "logs": used.logs},
            store_bytes=st.size,
            free_bytes=free,
            alarms=alarms,
            drops=st.drops,
            recent_drops=st.recent,
            raw_horizon=st.raw_horizon,
            minute_horizon=st.minute_horizon,
        )

    def _store(self) -> _Store:
        try:
            with self.connect() as conn:
                size = retention.store_bytes(conn)
                totals = retention.drop_totals(conn)
                recent = [
                    {"dropped_at": a.isoformat(), "day": d.isoformat(), "reason": r, "rows": n, "bytes": b, "tier": t}
                    for a, d, r, n, b, t in retention.recent_drops(conn, 5)
                ]
                raw, minute = retention.horizons(conn)
        except (psycopg.Error, PoolTimeout) as e:
            log.info("store size not read: %s", e)
            return _Store(None, {}, [], None, None)
        totals_by_reason = {r: {"days": n, "rows": rows} for r, (n, rows) in totals.items()}
        return _Store(size, totals_by_reason, recent, raw, minute)

    def _floor_alarms(self, watch: list[Path]) -> tuple[list[Alarm], int | None]:
        try:
            check = check_floor(watch, self.floor)
        except OSError as e:
            return [Alarm("floor", f"free space of the watched folders unknown ({e}); consumption paused")], None
        alarms = [
            Alarm("floor", f"{path}: {human(free)} free, under the floor of {human(floor)}; consumption paused")
            for path, free, floor in check.low
        ]
        return alarms, check.least_free

    def _export(self, d: DiskStatus) -> None:
        if d.budget_bytes is not None:
            self._g_budget.set(d.budget_bytes)
        if d.floor_bytes is not None:
            self._g_floor.set(d.floor_bytes)
        if d.free_bytes is not None:
            self._g_free.set(d.free_bytes)
        for name, v in d.used.items():
            self._g_used.labels(component=name).set(v)
        for name, v in d.shares.items():
            self._g_share.labels(component=name).set(v)
        kinds = {a.kind for a in d.alarms}
        for kind in ("floor", "over_budget", "near_budget"):
            self._g_alarm.labels(kind=kind).set(1 if kind in kinds else 0)
        for reason, counts in d.drops.items():
            self._g_drops.labels(reason=reason).set(counts["days"])


def _budget_alarms(shares: dict[str, int], live: dict[str, int]) -> list[Alarm]:
    """PostgreSQL's share only: Kafka's log and the logs sit at their shares by design (the
    oldest segments and rotated logs go), while the store reaching its share drops raw days."""
    share, used = shares["postgres"], live.get("postgres", 0)
    if used > share:
        detail = (
            f"PostgreSQL holds {human(used)}, over its share of {human(share)}: the oldest raw days are dropped, "
            f"and with only today's left the consumer pauses"
        )
        return [Alarm("over_budget", detail)]
    if used > NEAR * share:
        return [Alarm("near_budget", f"PostgreSQL holds {human(used)} of its {human(share)} share")]
    return []


def as_dict(d: DiskStatus) -> dict[str, Any]:
    return asdict(d)
