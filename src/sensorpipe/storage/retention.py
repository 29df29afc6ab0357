"""Retention by size: what the store takes on disk, which raw days can go, and the record of
what went (migration 009).

The consumer calls `enforce` on its own autocommit connection. Contract: only days before the
current UTC day are ever dropped, oldest first, one transaction each. Raw days go first (the
partition, its dedupe rows and the raw horizon move together); only when no raw day before
today is left do 1-minute rollup days go (migration 010: the partition and the minute horizon
move together). The hourly rollups are never touched here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

# The database's files. The WAL is not counted here: the disk plan reserves its own part of
# PostgreSQL's share for it (max_wal_size), and the consumer is given the rest.
_DB_BYTES = "SELECT pg_database_size(current_database())"
# The day partitions of `metrics` (raw rows) or of `metrics_1m` (1-minute rollups) before a
# day, listed by their names (migration 011); the parent is one of those two names, never
# user input.
_DAYS = """
SELECT p.day, pg_total_relation_size(p.relid) AS bytes
FROM sensorpipe_day_partitions(%(parent)s::regclass) p
WHERE p.day < %(before)s
ORDER BY 1
"""
_DROP_DAY = {"raw": "SELECT sensorpipe_drop_raw_day(%s, %s, %s)", "1m": "SELECT sensorpipe_drop_minute_day(%s, %s, %s)"}

_HORIZONS = "SELECT raw_horizon, minute_horizon FROM retention_state"
_DROPS = """
SELECT dropped_at, day, reason, rows, bytes, tier FROM retention_log ORDER BY id DESC LIMIT %s
"""
_DROP_TOTALS = (
    "SELECT reason, count(*), coalesce(sum(rows), 0)::int8 FROM retention_log WHERE tier = 'raw' GROUP BY reason"
)


@dataclass(frozen=True)
class Drop:
    day: date
    rows: int
    bytes: int
    tier: str = "raw"  # raw | 1m


@dataclass(frozen=True)
class Enforced:
    """What one pass of size retention found and did."""

    store_bytes: int  # after the drops
    share: int
    drops: list[Drop]
    found_bytes: int = 0  # before the drops

    @property
    def over(self) -> bool:
        """Still over the share: nothing before today was left to drop but hourly rollups."""
        return self.store_bytes > self.share


def store_bytes(conn: psycopg.Connection[Any]) -> int:
    """The store's files on disk, in bytes."""
    row = conn.execute(_DB_BYTES).fetchone()
    return int(row[0]) if row else 0


def raw_days(conn: psycopg.Connection[Any], before: date) -> list[tuple[date, int]]:
    """The raw days stored before `before`, oldest first, with their bytes on disk."""
    return _days(conn, "metrics", before)


def minute_days(conn: psycopg.Connection[Any], before: date) -> list[tuple[date, int]]:
    """The days of 1-minute rollups stored before `before`, oldest first, with their bytes."""
    return _days(conn, "metrics_1m", before)


def _days(conn: psycopg.Connection[Any], parent: str, before: date) -> list[tuple[date, int]]:
    rows = conn.execute(_DAYS, {"parent": parent, "before": before}).fetchall()
    return [(d, int(b)) for d, b in rows]


def enforce(conn: psycopg.Connection[Any], share: int, today: date, target: int | None = None) -> Enforced:
    """Drop the oldest days before `today` while the store's files are over `target` bytes
    (default: `share`): raw days first, then, once none is left, 1-minute rollup days. A target
    under the share is the caller's high-water mark: it leaves room for what arrives before the
    next pass, so the files stay under the share.

    The budget is on disk, so the files are what count. A day's metrics partition leaves the
    disk when it is dropped; its dedupe rows leave space inside processed_events that later
    rows reuse (after autovacuum) without the file growing. So a drop normally brings the
    files under the share at once, and they grow again only as the next day's rows arrive;
    when they do not (the share was lowered), older days go too, since nothing else shrinks
    the files."""
    limit = share if target is None else min(target, share)
    found = size = store_bytes(conn)
    drops: list[Drop] = []
    for tier, days in (("raw", raw_days), ("1m", minute_days)):
        if size <= limit:
            break
        for day, bytes_ in days(conn, today):
            with conn.transaction():
                row = conn.execute(_DROP_DAY[tier], (day, "size", today)).fetchone()
            drops.append(Drop(day, int(row[0]) if row else 0, bytes_, tier))
            size = store_bytes(conn)
            if size <= limit:
                break
    return Enforced(size, share, drops, found)


def horizon(conn: psycopg.Connection[Any]) -> datetime | None:
    """The earliest event time still accepted after size drops (None: time retention only)."""
    return horizons(conn)[0]


def horizons(conn: psycopg.Connection[Any]) -> tuple[datetime | None, datetime | None]:
    """Where the raw rows and the 1-minute rollups start after drops (None: by their days)."""
    row = conn.execute(_HORIZONS).fetchone()
    return (row[0], row[1]) if row else (None, None)


def recent_drops(conn: psycopg.Connection[Any], limit: int = 20) -> list[tuple[Any, ...]]:
    """(dropped_at, day, reason, rows, bytes, tier), newest first."""
    return list(conn.execute(_DROPS, (limit,)).fetchall())


def drop_totals(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    """reason -> (raw days dropped, rows dropped)."""
    return {str(r): (int(n), int(rows)) for r, n, rows in conn.execute(_DROP_TOTALS).fetchall()}
