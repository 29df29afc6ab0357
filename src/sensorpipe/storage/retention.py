"""Retention by size: what the store takes on disk, which raw days can go, and the record of
what went (migration 009).

The consumer calls `enforce` on its own autocommit connection. Contract: only raw days before
the current UTC day are ever dropped, oldest first, one transaction each (the partition, its
dedupe rows and the raw horizon move together); the rollups are never touched here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

# The database's files. The WAL is not counted here: the disk plan reserves its own part of
# PostgreSQL's share for it (max_wal_size), and the consumer is given the rest.
_DB_BYTES = "SELECT pg_database_size(current_database())"
_RAW_DAYS = """
SELECT to_date(substr(c.relname, 9), 'YYYYMMDD') AS day, pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'metrics' AND c.relname ~ '^metrics_[0-9]{8}$'
  AND to_date(substr(c.relname, 9), 'YYYYMMDD') < %s
ORDER BY 1
"""
# Space inside the tables that inserts will reuse (deleted dedupe rows, trimmed rollups), as
# vacuum recorded it in the free space map: the store's live size is its files minus this,
# so one drop is not followed by another while the first one's space waits to be reused.
_REUSABLE = """
SELECT coalesce(sum(f.avail), 0)::int8
FROM (SELECT table_name::regclass AS rel FROM retention_targets
      UNION ALL
      SELECT i.indexrelid::regclass FROM pg_index i JOIN retention_targets t ON i.indrelid = t.table_name) r,
     LATERAL pg_freespace(r.rel) f
"""
_DROP_DAY = "SELECT sensorpipe_drop_raw_day(%s, %s)"
_VACUUM_DEDUPE = "VACUUM processed_events"
_HORIZON = "SELECT raw_horizon FROM retention_state"
_DROPS = """
SELECT dropped_at, day, reason, rows, bytes FROM retention_log ORDER BY id DESC LIMIT %s
"""
_DROP_TOTALS = "SELECT reason, count(*), coalesce(sum(rows), 0)::int8 FROM retention_log GROUP BY reason"


@dataclass(frozen=True)
class Drop:
    day: date
    rows: int
    bytes: int


@dataclass(frozen=True)
class Enforced:
    """What one pass of size retention found and did."""

    store_bytes: int  # after the drops
    share: int
    drops: list[Drop]

    @property
    def over(self) -> bool:
        """Still over the share: nothing before today was left to drop."""
        return self.store_bytes > self.share


def store_bytes(conn: psycopg.Connection[Any]) -> int:
    """The store's live size: its files, less the space its tables will reuse."""
    row = conn.execute(_DB_BYTES).fetchone()
    total = int(row[0]) if row else 0
    free = conn.execute(_REUSABLE).fetchone()
    return total - (int(free[0]) if free else 0)


def raw_days(conn: psycopg.Connection[Any], before: date) -> list[tuple[date, int]]:
    """The raw days stored before `before`, oldest first, with their bytes on disk."""
    return [(d, int(b)) for d, b in conn.execute(_RAW_DAYS, (before,)).fetchall()]


def enforce(conn: psycopg.Connection[Any], share: int, today: date) -> Enforced:
    """Drop the oldest raw days before `today` while the store is over `share` bytes. Needs
    an autocommit connection: after each drop, vacuum records the dedupe rows' space as
    reusable before the size is measured again."""
    size = store_bytes(conn)
    drops: list[Drop] = []
    if size <= share:
        return Enforced(size, share, drops)
    for day, bytes_ in raw_days(conn, today):
        with conn.transaction():
            row = conn.execute(_DROP_DAY, (day, "size")).fetchone()
        drops.append(Drop(day, int(row[0]) if row else 0, bytes_))
        conn.execute(_VACUUM_DEDUPE)
        size = store_bytes(conn)
        if size <= share:
            break
    return Enforced(size, share, drops)


def horizon(conn: psycopg.Connection[Any]) -> datetime | None:
    """The earliest event time still accepted after size drops (None: time retention only)."""
    row = conn.execute(_HORIZON).fetchone()
    return row[0] if row else None


def recent_drops(conn: psycopg.Connection[Any], limit: int = 20) -> list[tuple[Any, ...]]:
    """(dropped_at, day, reason, rows, bytes), newest first."""
    return list(conn.execute(_DROPS, (limit,)).fetchall())


def drop_totals(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    """reason -> (days dropped, rows dropped)."""
    return {str(r): (int(n), int(rows)) for r, n, rows in conn.execute(_DROP_TOTALS).fetchall()}
