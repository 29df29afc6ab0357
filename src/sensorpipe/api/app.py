"""The read-only HTTP API (FastAPI). The only writes go to the configuration store; it never
writes to Kafka. `create_app` is the one wiring function: no module-level app or pool. The
routes live in `api.routes`, one module per area."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cachetools import TTLCache, cached
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensorpipe.api import hours
from sensorpipe.api.config import ApiConfig
from sensorpipe.api.deps import Services, WriteLimiter
from sensorpipe.api.disk import DiskWatch
from sensorpipe.api.gate import Gate
from sensorpipe.api.history import PipelineHistory, StoreReading
from sensorpipe.api.routes import config, deadletters, export, ops, readings, sensors
from sensorpipe.dlq import payload
from sensorpipe.runtime.pipeline import PipelineMonitor
from sensorpipe.runtime.process import freeze_startup_heap
from sensorpipe.storage import deadletters as dead_letter_store
from sensorpipe.storage import queries, summaries

__all__ = ["ApiConfig", "create_app"]

log = logging.getLogger("sensorpipe.api")


class Observe:
    """Request latency and 5xx counts per route template, as plain ASGI middleware: Starlette's
    `@app.middleware("http")` runs every request through an extra task and stream wrapper,
    which cost the API about a fifth of its request rate."""

    def __init__(self, app: ASGIApp, seconds: Histogram, errors: Counter) -> None:
        self.app = app
        self.seconds = seconds
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # an exception that escapes the app becomes a 500 further out

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router records the matched route in the scope it was given (this one)
            name = getattr(scope.get("route"), "path", "other")
            self.seconds.labels(name).observe(time.perf_counter() - t0)
            if status >= 500:
                self.errors.labels(name).inc()


def _pools(cfg: ApiConfig) -> tuple[AsyncConnectionPool[Any], ConnectionPool[Any]]:
    """The read routes take connections from the async pool, which is read-only: no read path
    can write, whatever its SQL. The sync pool serves the configuration store's routes (its
    only writes) and the samplers' threads; it states read-write, so that a role or database
    default of read-only cannot turn the store's writes into errors. Both are autocommit,
    under the statement timeout, and name themselves in pg_stat_activity."""
    timeout = f"SET statement_timeout = {int(cfg.statement_timeout_ms)}"
    kwargs = {"autocommit": True, "connect_timeout": 3, "application_name": queries.APPLICATION_NAME}

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(timeout)
        conn.execute("SET default_transaction_read_only = off")

    async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(timeout)
        await conn.execute("SET default_transaction_read_only = on")

    pool = AsyncConnectionPool(
        cfg.dsn, min_size=2, max_size=12, open=False, configure=configure_async, kwargs=kwargs, timeout=5
    )
    sync_pool = ConnectionPool(
        cfg.dsn, min_size=1, max_size=4, open=False, configure=configure, kwargs=kwargs, timeout=5
    )
    return pool, sync_pool


def _monitor(cfg: ApiConfig, sync_pool: ConnectionPool[Any]) -> PipelineMonitor:
    def stored_total() -> int | None:
        try:
            with sync_pool.connection(timeout=2) as conn:
                return int(summaries.counters(conn).get("stored", 0))
        except (psycopg.Error, PoolTimeout):
            return None

    return PipelineMonitor(
        cfg.kafka_client(),
        cfg.topic,
        cfg.dlq_topic,
        cfg.group,
        stored_total,
        interval_s=cfg.monitor_interval_s,
    )


def _history(
    cfg: ApiConfig, sync_pool: ConnectionPool[Any], monitor: PipelineMonitor, disk: DiskWatch
) -> PipelineHistory:
    def read_store(since: float) -> StoreReading | None:
        at = datetime.fromtimestamp(since, UTC)
        now = datetime.fromtimestamp(cfg.clock(), UTC)
        try:
            with sync_pool.connection(timeout=2) as conn:
                counts = summaries.counters(conn)
                fresh = summaries.freshness(conn, at, now - timedelta(days=1), now + timedelta(seconds=1))
                silent, examples = summaries.silent_sensors(conn)
        except (psycopg.Error, PoolTimeout) as e:
            log.info("store not read for the history: %s", e)
            return None
        return StoreReading(int(counts.get("stored", 0)), int(counts.get("duplicates", 0)), fresh, silent, examples)

    return PipelineHistory(
        lambda: monitor.latest, read_store, lambda: disk.latest, interval_s=max(1.0, 2 * cfg.monitor_interval_s)
    )


def _middleware(app: FastAPI, cfg: ApiConfig, registry: CollectorRegistry) -> None:
    """Outermost last: Observe, then the gate, then CORS."""
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "PUT"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=True,
        )
    app.add_middleware(
        Gate, allowed_hosts=cfg.allowed_hosts, cors_origins=cfg.cors_origins, max_body_bytes=cfg.max_body_bytes
    )
    seconds = Histogram("sensorpipe_api_request_seconds", "Request latency", ["route"], registry=registry)
    errors = Counter("sensorpipe_api_errors", "Responses with status >= 500", ["route"], registry=registry)
    app.add_middleware(Observe, seconds=seconds, errors=errors)


async def _too_slow(_r: Request, _e: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the query exceeded the statement timeout; narrow the range or sensors"}, status_code=503
    )


async def _db_down(_r: Request, e: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", e)
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly"}, status_code=503, headers={"Retry-After": "2"}
    )


def _no_dashboard() -> JSONResponse:
    return JSONResponse({"detail": "the dashboard is not built (run `make setup`); the API is at /docs"})


def create_app(cfg: ApiConfig) -> FastAPI:
    registry = CollectorRegistry()
    pool, sync_pool = _pools(cfg)
    hour_cache = hours.HourCache(cfg.hour_cache_bytes)
    registry.register(hours.CacheCollector(hour_cache))
    monitor = _monitor(cfg, sync_pool)
    disk_watch = DiskWatch(cfg.state_dir, lambda: sync_pool.connection(timeout=2), registry, cfg.disk_floor)
    svc = Services(
        cfg=cfg,
        monitor=monitor,
        disk_watch=disk_watch,
        history=_history(cfg, sync_pool, monitor, disk_watch),
        hour_cache=hour_cache,
        limiter=WriteLimiter(cfg.write_limit, cfg.write_window_s),
        registry=registry,
        dlq_reader=payload.Reader(cfg.kafka_client(), cfg.dlq_topic, deadletters.PAYLOAD_MAX),
        timelines=TTLCache(maxsize=16, ttl=5.0),
        sparklines=TTLCache(maxsize=16, ttl=5.0),
        quiet_pages=TTLCache(maxsize=16, ttl=2.0),
        reason_counts=cached(TTLCache(maxsize=1, ttl=5.0), key=lambda _conn: "all", lock=threading.Lock())(
            dead_letter_store.reasons
        ),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        sync_pool.open(wait=False)
        svc.monitor.start()
        svc.disk_watch.start()
        svc.history.start()
        freeze_startup_heap()  # full collections had been the aggregate benchmark's p99
        try:
            yield
        finally:
            svc.history.stop()
            svc.disk_watch.stop()
            svc.monitor.stop()
            svc.dlq_reader.close()
            await pool.close()
            sync_pool.close()

    app = FastAPI(
        title="sensorpipe API",
        version="1.0",
        summary="Read-only metrics, summaries and pipeline health; the producer configuration store.",
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.sync_pool = sync_pool
    app.state.services = svc
    _middleware(app, cfg, registry)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _too_slow)
    app.add_exception_handler(psycopg.OperationalError, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)
    routers = [readings.router(), export.router(), sensors.router(), deadletters.router(), ops.pipeline_router()]
    for router in (*routers, config.router(), ops.health_router()):
        app.include_router(router)
    if cfg.dashboard_dir is not None and (cfg.dashboard_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=cfg.dashboard_dir, html=True), name="dashboard")
    else:
        app.add_api_route("/", _no_dashboard, include_in_schema=False)
    return app
