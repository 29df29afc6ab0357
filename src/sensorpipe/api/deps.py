"""What a route depends on (FastAPI dependencies): the database pools, the shared services,
and the admin check for writes."""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from cachetools import TTLCache
from fastapi import Depends, Header, HTTPException, Request
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from sensorpipe.api import hours
from sensorpipe.api.config import ApiConfig
from sensorpipe.api.disk import DiskWatch
from sensorpipe.api.history import PipelineHistory
from sensorpipe.api.schemas import DeadLetterTimeline
from sensorpipe.dlq import payload
from sensorpipe.runtime.pipeline import PipelineMonitor
from sensorpipe.storage import queries


class WriteLimiter:
    """A sliding-window limit on writes per client address. Clients with no write inside the
    window are forgotten (swept at most once a window), so what it holds is bounded by the
    clients that wrote within the last two windows."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s = limit, window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def check(self, client: str) -> float | None:
        """None if allowed, else seconds until the next write would be."""
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window_s - now
            hits.append(now)
            return None

    def clients(self) -> int:
        """How many clients are remembered."""
        with self._lock:
            return len(self._hits)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.window_s
        for client in [c for c, hits in self._hits.items() if not hits or hits[-1] <= now - self.window_s]:
            del self._hits[client]


async def get_pool(request: Request) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """The read routes' pool of async connections (autocommit, under the statement timeout).

    The read routes are async: they await PostgreSQL on the event loop, with no hand-off to
    the threadpool and no worker thread contending with the loop for the GIL, which costs the
    API less CPU per request than sync routes (docs/decisions/007-read-paths.md).

    Routes hold a connection only around their queries: `async with db.connection() as c`.
    This is an async function, and not a generator yielding a connection, so FastAPI calls it
    on the loop without an exit stack around the request.
    """
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = request.app.state.pool
    return pool


def get_sync_pool(request: Request) -> ConnectionPool[psycopg.Connection[Any]]:
    """The configuration store's pool: `config_store` is shared with the sync producer and
    consumer processes, and its routes are rare, so they stay sync (run in the threadpool)."""
    pool: ConnectionPool[psycopg.Connection[Any]] = request.app.state.sync_pool
    return pool


Db = Annotated[AsyncConnectionPool[psycopg.AsyncConnection[Any]], Depends(get_pool)]
SyncDb = Annotated[ConnectionPool[psycopg.Connection[Any]], Depends(get_sync_pool)]


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Writes need `Authorization: Bearer <token>` whenever a token is set, and are rate-limited."""
    svc: Services = request.app.state.services
    cfg = svc.cfg
    if cfg.admin_token is not None:
        expected = f"Bearer {cfg.admin_token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise HTTPException(
                401,
                "a valid admin token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    client = request.client.host if request.client else "unknown"
    wait = svc.limiter.check(client)
    if wait is not None:
        raise HTTPException(
            429, f"too many writes; retry in {wait:.1f}s", headers={"Retry-After": str(max(1, round(wait)))}
        )
    return "admin" if cfg.admin_token else client


Admin = Annotated[str, Depends(require_admin)]


@dataclass(frozen=True)
class Services:
    """What the routes share, built once by `create_app`: the configuration, the samplers of
    the pipeline, its history and the disk, the hour cache, the write limiter, the metrics registry,
    the reader of the dead-letter topic, and the dead-letter timelines, counts by reason,
    sparklines and fleet pages by quiet of the last seconds."""

    cfg: ApiConfig
    monitor: PipelineMonitor
    disk_watch: DiskWatch
    history: PipelineHistory
    hour_cache: hours.HourCache
    limiter: WriteLimiter
    registry: CollectorRegistry
    dlq_reader: payload.Reader  # dead letters' originals, read back by position
    # Answers that may be a few seconds old, bounded in entries; used from the event loop only
    # (async routes), as TTLCache takes no lock.
    timelines: TTLCache[int, DeadLetterTimeline]  # dead letters by reason over time, by hours asked
    sparklines: TTLCache[tuple[tuple[str, ...], int, datetime], bytes]  # bodies, by (ids, minutes, first minute)
    quiet_pages: TTLCache[tuple[str | None, bool, int], bytes]  # bodies of the fleet by quiet, by (query, desc, limit)
    # Dead letters by reason, counted over the whole table at most once in 5 s (thread-safe).
    reason_counts: Callable[[psycopg.Connection[Any]], list[tuple[str, int]]]

    def now(self) -> datetime:
        """The pipeline's clock (contracts.clock): "now" for default ranges and for which tier
        still covers a range."""
        return datetime.fromtimestamp(self.cfg.clock(), UTC)

    def horizons(self) -> queries.Horizons:
        """Where retention left raw rows and 1-minute rollups starting, as the disk watch last read it."""
        d = self.disk_watch.latest
        return queries.Horizons() if d is None else queries.Horizons(d.raw_horizon, d.minute_horizon)


def get_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(get_services)]
