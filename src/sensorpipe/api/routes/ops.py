"""Pipeline health, liveness and readiness, and the Prometheus metrics."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from sensorpipe.api import schemas as s
from sensorpipe.api.deps import Db, Svc
from sensorpipe.api.disk import as_dict as disk_dict
from sensorpipe.api.params import ERRORS
from sensorpipe.runtime.pipeline import as_dict
from sensorpipe.storage import queries

# A Kafka sample older than this makes the API not ready.
STALE_SAMPLE_S = 15


async def get_pipeline(svc: Svc) -> Any:
    """Lag per partition, its trend and drain estimate, the group, rates, stalls and the DLQ size."""
    # async: it only reads the monitor's latest sample, so it runs on the event loop
    # without a hand-off to the threadpool.
    sample = svc.monitor.latest
    if sample is None:
        raise HTTPException(503, "no pipeline sample yet; Kafka may be starting", headers={"Retry-After": "1"})
    disk = svc.disk_watch.latest
    body = {**as_dict(sample), "disk": None if disk is None else disk_dict(disk)}
    return Response(orjson.dumps(body), media_type="application/json")


async def get_pipeline_history(
    svc: Svc,
    seconds: Annotated[int, Query(ge=10, le=3600, description="How far back (the API keeps `keep_s`).")] = 900,
    points: Annotated[int, Query(ge=10, le=1000, description="At most this many points, merged.")] = 300,
) -> Any:
    """Throughput, freshness and per-partition lag over the last minutes, bounded in points."""
    w = svc.history.window(seconds, points)
    parts = sorted({k for p in w.points for k in p.lag})
    body = {
        "at": [p.at for p in w.points],
        "step_s": w.step_s,
        "keep_s": svc.history.keep_s,
        "produced_per_s": [p.produced_per_s for p in w.points],
        "stored_per_s": [p.stored_per_s for p in w.points],
        "duplicates_per_s": [p.duplicates_per_s for p in w.points],
        "dead_lettered_per_s": [p.dead_lettered_per_s for p in w.points],
        "freshness_p50_ms": [p.freshness_p50_ms for p in w.points],
        "freshness_p99_ms": [p.freshness_p99_ms for p in w.points],
        "partitions": parts,
        "lag": [[p.lag.get(k) for p in w.points] for k in parts],
        "lag_seconds": [[p.lag_s.get(k) for p in w.points] for k in parts],
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def get_alarms(svc: Svc) -> Any:
    """What needs an operator now: stalled partitions, no consumer, silent sensors, the
    dead-letter rate, the disk, and whether Kafka and the database answer."""
    body = {"at": time.time(), "alarms": [a.__dict__ for a in svc.history.alarms()]}
    return Response(orjson.dumps(body), media_type="application/json")


async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def readyz(db: Db, svc: Svc) -> JSONResponse:
    """The database and Kafka are reachable."""
    checks: dict[str, str] = {}
    try:
        async with db.connection(timeout=2) as c:
            checks["database"] = "ok" if await queries.ping(c) else "failed"
    except (psycopg.Error, PoolTimeout) as e:
        checks["database"] = f"unreachable: {type(e).__name__}"
    sample = svc.monitor.latest
    if sample is None:
        checks["kafka"] = "no sample yet"
    elif sample.error:
        checks["kafka"] = f"unreachable: {sample.error[:120]}"
    elif time.time() - sample.at > STALE_SAMPLE_S:
        checks["kafka"] = "stale sample"
    else:
        checks["kafka"] = "ok"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


def prometheus_metrics(svc: Svc) -> Response:
    """Prometheus text format, at /metrics itself (a mounted app answers it with a redirect)."""
    return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)


def pipeline_router() -> APIRouter:
    r = APIRouter()
    r.add_api_route(
        "/api/pipeline",
        get_pipeline,
        response_model=s.PipelinePublic,
        responses={503: {"model": s.Problem}},
        tags=["pipeline"],
    )
    r.add_api_route(
        "/api/pipeline/history",
        get_pipeline_history,
        response_model=s.PipelineHistoryPublic,
        responses=ERRORS,
        tags=["pipeline"],
    )
    r.add_api_route("/api/alarms", get_alarms, response_model=s.AlarmsPublic, tags=["pipeline"])
    return r


def health_router() -> APIRouter:
    r = APIRouter(tags=["health"])
    r.add_api_route("/healthz", healthz)
    r.add_api_route("/readyz", readyz, responses={503: {"model": s.Problem}})
    r.add_api_route("/metrics", prometheus_metrics, include_in_schema=False)
    return r
