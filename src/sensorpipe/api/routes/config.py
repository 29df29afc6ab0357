"""The producer configuration store: the API's only writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import ValidationError

from sensorpipe.api import schemas as s
from sensorpipe.api.deps import Admin, SyncDb
from sensorpipe.api.params import ERRORS, decode_cursor, encode_cursor
from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.storage import config_store


def config_public(sc: config_store.StoredConfig) -> s.ConfigPublic:
    return s.ConfigPublic(version=sc.version, updated_at=sc.updated_at, updated_by=sc.updated_by, config=sc.config)


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
    return config_public(sc)


def put_config(db: SyncDb, body: PipelineConfig, who: Admin) -> s.ConfigPublic:
    """Store a new configuration version; unknown fields and out-of-range values are refused."""
    with db.connection() as c:
        return config_public(config_store.put(c, body, who))


def get_history(
    db: SyncDb,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> s.ConfigHistoryPage:
    """Past versions, newest first."""
    before = None
    if cursor:
        (before,) = decode_cursor(cursor, 1)
        if not isinstance(before, int):
            raise HTTPException(400, "cursor is not one this API issued")
    with db.connection() as c:
        rows = config_store.history(c, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    return s.ConfigHistoryPage(
        data=[config_public(r) for r in rows], next_cursor=encode_cursor(rows[-1].version) if more and rows else None
    )


def router() -> APIRouter:
    # The configuration store's routes are sync: `config_store` is shared with the sync
    # producer and consumer processes, and these routes are rare (they run in the threadpool).
    r = APIRouter(tags=["config"])
    path = "/api/producer-config"
    r.add_api_route(path, get_config, response_model=s.ConfigPublic, responses={**ERRORS, 404: {"model": s.Problem}})
    r.add_api_route(
        path,
        put_config,
        methods=["PUT"],
        response_model=s.ConfigPublic,
        responses={**ERRORS, 401: {"model": s.Problem}, 429: {"model": s.Problem}},
    )
    r.add_api_route(f"{path}/history", get_history, response_model=s.ConfigHistoryPage, responses=ERRORS)
    return r
