"""The configuration store: an append-only history of `PipelineConfig` versions.

The newest row is the current configuration. Rows are validated on the way in (by the
caller, through `PipelineConfig`) and again on the way out, so a reader never acts on an
invalid configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from sensorpipe.contracts.config import PipelineConfig

_LATEST = "SELECT version, config, updated_at, updated_by FROM producer_config ORDER BY version DESC LIMIT 1"
_HISTORY = (
    "SELECT version, config, updated_at, updated_by FROM producer_config"
    " WHERE (%(before)s::bigint IS NULL OR version < %(before)s) ORDER BY version DESC LIMIT %(limit)s"
)
_INSERT = (
    "INSERT INTO producer_config (config, updated_by) VALUES (%s, %s) RETURNING version, config, updated_at, updated_by"
)


@dataclass(frozen=True)
class StoredConfig:
    version: int
    config: PipelineConfig
    updated_at: datetime
    updated_by: str


def _row(row: tuple[Any, ...]) -> StoredConfig:
    return StoredConfig(int(row[0]), PipelineConfig.model_validate(row[1]), row[2], str(row[3]))


def latest(conn: psycopg.Connection[Any]) -> StoredConfig | None:
    """The current configuration, or None when none was ever stored. Raises
    pydantic.ValidationError when the stored row does not validate."""
    row = conn.execute(_LATEST).fetchone()
    return _row(row) if row else None


def latest_or_none(conn: psycopg.Connection[Any]) -> StoredConfig | None:
    try:
        return latest(conn)
    except ValidationError:
        return None


def history(conn: psycopg.Connection[Any], limit: int, before: int | None = None) -> list[StoredConfig]:
    rows = conn.execute(_HISTORY, {"before": before, "limit": limit}).fetchall()
    out = []
    for r in rows:
        try:
            out.append(_row(r))
        except ValidationError:
            continue
    return out


def put(conn: psycopg.Connection[Any], config: PipelineConfig, updated_by: str) -> StoredConfig:
    row = conn.execute(_INSERT, (Jsonb(config.model_dump(mode="json")), updated_by)).fetchone()
    assert row is not None
    return _row(row)


def seed_if_empty(dsn: str, config: PipelineConfig) -> StoredConfig | None:
    """Store `config` as version 1 when the store is empty (what `sensorpipe up` runs with)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("LOCK TABLE producer_config IN EXCLUSIVE MODE")
        if conn.execute("SELECT 1 FROM producer_config LIMIT 1").fetchone():
            return None
        return put(conn, config, "sensorpipe up")


def update(dsn: str, changes: dict[str, Any], updated_by: str) -> StoredConfig:
    """Store a new version: the newest valid configuration (or the defaults) with `changes`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        current = latest_or_none(conn)
        base = current.config.model_dump() if current else {}
        return put(conn, PipelineConfig.model_validate({**base, **changes}), updated_by)
