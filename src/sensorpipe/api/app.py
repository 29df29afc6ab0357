"""The read-only HTTP API (FastAPI). The only writes go to the configuration store; it never
writes to Kafka. `create_app` is the one wiring function: no module-level app or pool."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from pydantic import AwareDatetime, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensorpipe.api import hours
from sensorpipe.api import schemas as s
from sensorpipe.api.disk import DiskWatch
from sensorpipe.api.disk import as_dict as disk_dict
from sensorpipe.api.gate import Gate
from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.contracts.events import ID_PATTERN, ID_PATTERN_PORTABLE, MAX_ID_LEN
from sensorpipe.runtime.pipeline import PipelineMonitor, as_dict
from sensorpipe.runtime.process import freeze_startup_heap
from sensorpipe.storage import config_store, queries

log = logging.getLogger("sensorpipe.api")

MAX_SENSORS = 100
MAX_LIMIT = 10_000
MAX_RAW_RANGE = timedelta(days=7)
MAX_BUCKETS = 10_000
_BUCKET = re.compile(r"^(\d{1,5})(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

SensorIds = Annotated[
    list[str] | None,
    Query(alias="sensor_id", max_length=MAX_SENSORS, description=f"Repeatable; at most {MAX_SENSORS}."),
]
# Error responses every data route may give, documented so clients (and schemathesis) know them.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": s.Problem, "description": "A bad range, bucket, id or cursor; `detail` says which."},
    503: {"model": s.Problem, "description": "The database is unavailable or the query timed out."},
}
Start = Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone. Default: end - 1 h.")]
End = Annotated[AwareDatetime | None, Query(description="ISO 8601 with a zone, exclusive. Default: now.")]


@dataclass(frozen=True)
class ApiConfig:
    dsn: str
    bootstrap: str
    topic: str
    dlq_topic: str
    group: str
    admin_token: str | None
    statement_timeout_ms: int
    cors_origins: list[str]
    dashboard_dir: Path | None
    allowed_hosts: list[str] | None = None  # Host names answered (api.gate); None: any
    max_body_bytes: int = 65_536
    write_limit: int = 10  # PUTs per client per window
    write_window_s: float = 10.0
    monitor_interval_s: float = 1.0
    security_protocol: str = "PLAINTEXT"
    hour_cache_bytes: int = 32 << 20  # rendered whole hours of one sensor's buckets (api.hours)
    state_dir: Path | None = None  # the local stack's state folder, where its disk plan is
    disk_floor: str | None = None  # SENSORPIPE_DISK_FLOOR, judged as the consumer's guard does
    tiers: queries.Tiers = field(default_factory=queries.Tiers)  # how long each resolution is kept
    # The pipeline's clock (contracts.clock), the one producer and consumer stamp and retain
    # by: "now" for default ranges and for which tier still covers a range.
    clock: Callable[[], float] = time.time


class WriteLimiter:
    """A sliding-window limit on writes per client address."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str) -> float | None:
        """None if allowed, else seconds until the next write would be."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[client]
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window_s - now
            hits.append(now)
            return None


def _check_ids(ids: list[str] | None) -> list[str] | None:
    if not ids:
        return None
    for i in ids:
        if not 1 <= len(i) <= MAX_ID_LEN or not re.match(ID_PATTERN, i):
            raise HTTPException(400, f"{i[:80]!r} is not a valid id: 1-{MAX_ID_LEN} letters, digits or ._:@/+=-")
    return list(dict.fromkeys(ids))


# Times outside these bounds are refused: near the ends of Python's calendar, arithmetic on
# them (the default start, an offset to UTC) overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
OUT_OF_BOUNDS = f"times must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"


def _range(
    start: datetime | None, end: datetime | None, default: timedelta, limit: timedelta, now: datetime
) -> tuple[datetime, datetime]:
    try:
        for t in (start, end):
            if t is not None and not EARLIEST <= t <= LATEST:
                raise HTTPException(400, OUT_OF_BOUNDS)
        end = end or now
        start = start or end - default
    except OverflowError as e:  # an extreme zone offset on a date at the calendar's edge
        raise HTTPException(400, OUT_OF_BOUNDS) from e
    if end <= start:
        raise HTTPException(400, "end must be after start")
    if end - start > limit:
        raise HTTPException(400, f"the range may span at most {limit.days} days; narrow start/end")
    return start, end


def _bucket_seconds(text: str) -> int:
    m = _BUCKET.match(text)
    if not m:
        raise HTTPException(400, "bucket must look like 1s, 30s, 5m, 1h or 1d")
    secs = int(m.group(1)) * _UNITS[m.group(2)]
    if not 1 <= secs <= 86_400:
        raise HTTPException(400, "bucket must be between 1s and 1d")
    return secs


def _encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts, default=str)).decode().rstrip("=")


def _decode_cursor(cursor: str, n: int) -> list[Any]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as e:
        raise HTTPException(400, "cursor is not one this API issued") from e
    if not isinstance(parts, list) or len(parts) != n:
        raise HTTPException(400, "cursor is not one this API issued")
    return parts


def _parse_ts(text: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(str(text))
    except ValueError as e:
        raise HTTPException(400, "cursor is not one this API issued") from e
    if ts.tzinfo is None:
        raise HTTPException(400, "cursor is not one this API issued")
    return ts


async def get_pool(request: Request) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """The read routes' pool of async connections (autocommit, under the statement timeout).

    The read routes are async: they await PostgreSQL on the event loop, with no hand-off to
    the threadpool and no worker thread contending with the loop for the GIL. Against sync
    routes on the aggregate benchmark (one sensor, 24 h of minutes, wrk -c10, interleaved runs)
    the API process spent 1.4-1.8 ms of CPU per request instead of 2.5-3.6 ms.

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
    cfg: ApiConfig = request.app.state.cfg
    if cfg.admin_token is not None:
        expected = f"Bearer {cfg.admin_token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise HTTPException(
                401,
                "a valid admin token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    client = request.client.host if request.client else "unknown"
    wait = request.app.state.limiter.check(client)
    if wait is not None:
        raise HTTPException(
            429, f"too many writes; retry in {wait:.1f}s", headers={"Retry-After": str(max(1, round(wait)))}
        )
    return "admin" if cfg.admin_token else client


Admin = Annotated[str, Depends(require_admin)]


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


def create_app(cfg: ApiConfig) -> FastAPI:
    registry = CollectorRegistry()
    req_seconds = Histogram("sensorpipe_api_request_seconds", "Request latency", ["route"], registry=registry)
    req_errors = Counter("sensorpipe_api_errors", "Responses with status >= 500", ["route"], registry=registry)
    limiter = WriteLimiter(cfg.write_limit, cfg.write_window_s)
    hour_cache = hours.HourCache(cfg.hour_cache_bytes)

    timeout = f"SET statement_timeout = {int(cfg.statement_timeout_ms)}"

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(timeout)
        conn.execute("SET default_transaction_read_only = off")
        conn.commit()

    async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(timeout)

    # The read routes take connections from the async pool; the sync pool serves the
    # configuration store's routes and the pipeline monitor's thread.
    pool = AsyncConnectionPool(
        cfg.dsn,
        min_size=2,
        max_size=12,
        open=False,
        configure=configure_async,
        kwargs={"autocommit": True, "connect_timeout": 3, "application_name": queries.APPLICATION_NAME},
        timeout=5,
    )
    sync_pool = ConnectionPool(
        cfg.dsn,
        min_size=1,
        max_size=4,
        open=False,
        configure=configure,
        kwargs={"autocommit": True, "connect_timeout": 3, "application_name": queries.APPLICATION_NAME},
        timeout=5,
    )

    def stored_total() -> int | None:
        try:
            with sync_pool.connection(timeout=2) as conn:
                return int(queries.counters(conn).get("stored", 0))
        except (psycopg.Error, PoolTimeout):
            return None

    monitor = PipelineMonitor(
        cfg.bootstrap,
        cfg.topic,
        cfg.dlq_topic,
        cfg.group,
        stored_total,
        interval_s=cfg.monitor_interval_s,
        security_protocol=cfg.security_protocol,
    )

    disk_watch = DiskWatch(cfg.state_dir, lambda: sync_pool.connection(timeout=2), registry, cfg.disk_floor)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        sync_pool.open(wait=False)
        monitor.start()
        disk_watch.start()
        freeze_startup_heap()  # full collections had been the aggregate benchmark's p99
        try:
            yield
        finally:
            disk_watch.stop()
            monitor.stop()
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
    app.state.monitor = monitor
    app.state.cfg = cfg
    app.state.limiter = limiter
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
    app.add_middleware(Observe, seconds=req_seconds, errors=req_errors)

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def too_slow(_r: Request, _e: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "the query exceeded the statement timeout; narrow the range or sensors"}, status_code=503
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def db_down(_r: Request, e: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", e)
        return JSONResponse(
            {"detail": "the database is unavailable; retry shortly"}, status_code=503, headers={"Retry-After": "2"}
        )

    def cfg_now() -> datetime:
        return datetime.fromtimestamp(cfg.clock(), UTC)

    def horizons() -> queries.Horizons:
        """Where retention left raw rows and 1-minute rollups starting, as the disk watch last read it."""
        d = disk_watch.latest
        return queries.Horizons() if d is None else queries.Horizons(d.raw_horizon, d.minute_horizon)

    # -- readings ---------------------------------------------------------------------------
    @app.get("/api/readings", response_model=s.ReadingsPage, responses=ERRORS, tags=["metrics"])
    async def get_readings(
        db: Db,
        sensor_id: SensorIds = None,
        start: Start = None,
        end: End = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Response:
        """Raw readings in time order, with keyset pagination (at most 7 days per request)."""
        ids = _check_ids(sensor_id)
        lo, hi = _range(start, end, timedelta(hours=1), MAX_RAW_RANGE, cfg_now())
        after = None
        if cursor:
            ts, eid = _decode_cursor(cursor, 2)
            after = (_parse_ts(ts), str(eid))
        async with db.connection() as c:
            rows = await queries.readings(c, ids, lo, hi, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _encode_cursor(rows[-1]["timestamp"].isoformat(), rows[-1]["event_id"]) if more and rows else None
        # Rows go out as they came: the SQL names the columns as the schema does, and orjson
        # writes thousands of them far faster than per-row pydantic models.
        return Response(orjson.dumps({"data": rows, "next_cursor": nxt}), media_type="application/json")

    @app.get("/api/readings/aggregate", response_model=s.AggregatePage, responses=ERRORS, tags=["metrics"])
    async def get_aggregate(
        db: Db,
        sensor_id: SensorIds = None,
        start: Start = None,
        end: End = None,
        bucket: Annotated[str, Query(max_length=8, description="1s to 1d, e.g. 10s, 1m, 15m, 1h, 1d.")] = "1m",
    ) -> Response:
        """count, min, max and avg per bucket and sensor, from the finest tier that covers the range
        (raw rows, 1-minute or 1-hour rollups; `resolution` says which)."""
        ids = _check_ids(sensor_id)
        secs = _bucket_seconds(bucket)
        now = cfg_now()
        lo, hi = _range(start, end, timedelta(hours=1), timedelta(days=cfg.tiers.hour_days), now)
        if (hi - lo).total_seconds() / secs > MAX_BUCKETS:
            raise HTTPException(400, f"at most {MAX_BUCKETS} buckets per sensor: use a larger bucket")
        try:
            tier = cfg.tiers.for_aggregate(lo, secs, now, horizons())
        except queries.TierError as e:
            raise HTTPException(400, str(e)) from e
        async with db.connection() as c:
            if tier == queries.MINUTE and ids is not None and len(ids) == 1 and hours.cacheable(secs):
                # a sensor's chart: whole hours cached
                data, source = await hours.sensor_buckets(c, hour_cache, ids[0], lo, hi, secs), "metrics_1m"
            else:
                data, source = await queries.aggregate_json(c, ids, lo, hi, secs, tier)
        # PostgreSQL built the array; the envelope is written around it without parsing it.
        tail = orjson.dumps({"next_cursor": None, "bucket_seconds": secs, "source": source, "resolution": tier})
        return Response(b'{"data":' + data + b"," + tail[1:], media_type="application/json")

    @app.get("/api/summary", response_model=s.SummaryPublic, responses=ERRORS, tags=["metrics"])
    async def get_summary(db: Db, sensor_id: SensorIds = None, start: Start = None, end: End = None) -> s.SummaryPublic:
        """Totals and value statistics over a range (default: the last 24 h)."""
        ids = _check_ids(sensor_id)
        now = cfg_now()
        lo, hi = _range(start, end, timedelta(hours=24), timedelta(days=cfg.tiers.hour_days), now)
        kept = horizons()
        tier = cfg.tiers.for_summary(lo, now, kept)
        raw = lo >= cfg.tiers.starts(now, kept)[queries.RAW]
        async with db.connection() as c:
            r = await queries.summary(c, ids, lo, hi, resolution=tier, raw_covered=raw)
        return s.SummaryPublic(
            start=lo,
            end=hi,
            events=r.events,
            sensors=r.sensors,
            first_event=r.first,
            last_event=r.last,
            count=r.events,
            min=r.min,
            max=r.max,
            avg=r.avg,
            p50=r.p50,
            p95=r.p95,
            percentiles_exact=r.percentiles_exact,
            resolution=r.resolution,
            stored_total=r.stored_total,
            duplicates_ignored=r.duplicates,
            redeliveries=r.redeliveries,
            conflicts=r.conflicts,
            dlq_by_reason=r.dlq,
        )

    # -- sensors and events -----------------------------------------------------------------
    def _sensor(r: dict[str, Any]) -> s.SensorPublic:
        return s.SensorPublic(
            sensor_id=r["sensor_id"],
            count=r["events"],
            last_value=r["last_value"],
            last_timestamp=r["last_ts"],
            last_seen=r["last_seen"],
            last_seq=r["last_seq"],
            seq_gaps=r["seq_gaps"],
            order_violations=r["order_violations"],
        )

    @app.get("/api/sensors", response_model=s.SensorsPage, responses=ERRORS, tags=["sensors"])
    async def get_sensors(
        db: Db,
        q: Annotated[
            str | None,
            Query(max_length=MAX_ID_LEN, pattern=ID_PATTERN_PORTABLE, description="Substring of the sensor id."),
        ] = None,
        sort: Annotated[
            str, Query(pattern="^(sensor_id|events|last_seen|last_value|seq_gaps|order_violations)$")
        ] = "sensor_id",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> s.SensorsPage:
        """Per sensor: count, last value, last seen, last seq, seq gaps and order violations."""
        after = None
        if cursor:
            val, sid = _decode_cursor(cursor, 2)
            after = (_parse_ts(val) if sort == "last_seen" else val, str(sid))
        async with db.connection() as c:
            rows = await queries.sensors(c, q, sort, order == "desc", limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = None
        if more and rows:
            col = queries.SENSOR_SORTS[sort]
            last = rows[-1]
            val = last["last_seen" if col == "updated_at" else col]
            nxt = _encode_cursor(val.isoformat() if isinstance(val, datetime) else val, last["sensor_id"])
        return s.SensorsPage(data=[_sensor(r) for r in rows], next_cursor=nxt)

    @app.get(
        "/api/sensors/{sensor_id}",
        response_model=s.SensorPublic,
        responses={**ERRORS, 404: {"model": s.Problem}},
        tags=["sensors"],
    )
    async def get_sensor(db: Db, sensor_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)]) -> s.SensorPublic:
        """One sensor's running statistics."""
        _check_ids([sensor_id])
        async with db.connection() as c:
            r = await queries.sensor(c, sensor_id)
        if r is None:
            raise HTTPException(404, f"no sensor {sensor_id!r} has been stored")
        return _sensor(r)

    @app.get(
        "/api/events/{event_id}",
        response_model=s.EventPublic,
        responses={**ERRORS, 404: {"model": s.Problem}},
        tags=["metrics"],
    )
    async def get_event(db: Db, event_id: Annotated[str, PathParam(max_length=MAX_ID_LEN)]) -> s.EventPublic:
        """A processed event: where it came from and the stored reading."""
        _check_ids([event_id])
        async with db.connection() as c:
            r = await queries.event(c, event_id)
        if r is None:
            raise HTTPException(404, f"event {event_id!r} was not processed (or is older than retention)")
        reading = None
        if r["sensor_id"] is not None:
            reading = s.ReadingPublic(
                sensor_id=r["sensor_id"], event_id=r["event_id"], timestamp=r["ts"], value=r["value"], seq=r["seq"]
            )
        return s.EventPublic(
            event_id=r["event_id"],
            partition=r["kafka_partition"],
            offset=r["kafka_offset"],
            processed_at=r["processed_at"],
            reading=reading,
        )

    # -- pipeline ---------------------------------------------------------------------------
    @app.get("/api/pipeline", response_model=s.PipelinePublic, responses={503: {"model": s.Problem}}, tags=["pipeline"])
    async def get_pipeline() -> Any:
        """Lag per partition, its trend and drain estimate, the group, rates, stalls and the DLQ size."""
        # async: it only reads the monitor's latest sample, so it runs on the event loop
        # without a hand-off to the threadpool.
        sample = monitor.latest
        if sample is None:
            raise HTTPException(503, "no pipeline sample yet; Kafka may be starting", headers={"Retry-After": "1"})
        disk = disk_watch.latest
        body = {**as_dict(sample), "disk": None if disk is None else disk_dict(disk)}
        return Response(orjson.dumps(body), media_type="application/json")

    # -- configuration store ----------------------------------------------------------------
    def _public(sc: config_store.StoredConfig) -> s.ConfigPublic:
        return s.ConfigPublic(version=sc.version, updated_at=sc.updated_at, updated_by=sc.updated_by, config=sc.config)

    @app.get(
        "/api/producer-config",
        response_model=s.ConfigPublic,
        responses={**ERRORS, 404: {"model": s.Problem}},
        tags=["config"],
    )
    def get_config(db: SyncDb) -> s.ConfigPublic:
        """The current producer configuration (and the consumer's slowdown knob)."""
        try:
            with db.connection() as c:
                sc = config_store.latest(c)
        except ValidationError as e:
            raise HTTPException(
                503,
                f"the newest stored configuration is invalid ({e.error_count()} errors); store a valid one with PUT",
            ) from e
        if sc is None:
            raise HTTPException(404, "no configuration stored yet; the producer runs on its flags")
        return _public(sc)

    @app.put(
        "/api/producer-config",
        response_model=s.ConfigPublic,
        responses={**ERRORS, 401: {"model": s.Problem}, 429: {"model": s.Problem}},
        tags=["config"],
    )
    def put_config(db: SyncDb, body: PipelineConfig, who: Admin) -> s.ConfigPublic:
        """Store a new configuration version; unknown fields and out-of-range values are refused."""
        with db.connection() as c:
            return _public(config_store.put(c, body, who))

    @app.get("/api/producer-config/history", response_model=s.ConfigHistoryPage, responses=ERRORS, tags=["config"])
    def get_history(
        db: SyncDb,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> s.ConfigHistoryPage:
        """Past versions, newest first."""
        before = None
        if cursor:
            (before,) = _decode_cursor(cursor, 1)
            if not isinstance(before, int):
                raise HTTPException(400, "cursor is not one this API issued")
        with db.connection() as c:
            rows = config_store.history(c, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        return s.ConfigHistoryPage(
            data=[_public(r) for r in rows], next_cursor=_encode_cursor(rows[-1].version) if more and rows else None
        )

    # -- health -----------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": s.Problem}})
    async def readyz() -> JSONResponse:
        """The database and Kafka are reachable."""
        checks: dict[str, str] = {}
        try:
            async with pool.connection(timeout=2) as c:
                checks["database"] = "ok" if await queries.ping(c) else "failed"
        except (psycopg.Error, PoolTimeout) as e:
            checks["database"] = f"unreachable: {type(e).__name__}"
        sample = monitor.latest
        if sample is None:
            checks["kafka"] = "no sample yet"
        elif sample.error:
            checks["kafka"] = f"unreachable: {sample.error[:120]}"
        elif time.time() - sample.at > 15:
            checks["kafka"] = "stale sample"
        else:
            checks["kafka"] = "ok"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format, at /metrics itself (a mounted app answers it with a redirect)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if cfg.dashboard_dir is not None and (cfg.dashboard_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=cfg.dashboard_dir, html=True), name="dashboard")
    else:

        @app.get("/", include_in_schema=False)
        def no_dashboard() -> JSONResponse:
            return JSONResponse({"detail": "the dashboard is not built (run `make setup`); the API is at /docs"})

    return app
