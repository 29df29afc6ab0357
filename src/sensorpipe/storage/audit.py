"""Read-only queries of the audit: what the store holds, and whether it holds it once and in order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from sensorpipe.storage import summaries

_STORED_IDS = "SELECT event_id FROM processed_events"
_STORED_IDS_SINCE = "SELECT event_id FROM processed_events WHERE processed_at >= %s"
_DUPLICATE_ROWS = """
SELECT (SELECT count(*) - count(DISTINCT event_id) FROM metrics) AS metrics_dups,
       (SELECT count(*) - count(DISTINCT event_id) FROM processed_events) AS processed_dups,
       (SELECT count(*) FROM metrics) AS metrics_rows,
       (SELECT count(*) FROM processed_events) AS processed_rows
"""
# Scoped to the rows stored since a moment (a demo's own run): an event id stored since then
# that is in metrics more than once, counting copies stored before it.
_DUPLICATE_ROWS_SINCE = """
SELECT (SELECT count(*) - count(DISTINCT event_id) FROM metrics
        WHERE event_id IN (SELECT event_id FROM metrics WHERE ingested_at >= %(since)s)) AS metrics_dups,
       (SELECT count(*) - count(DISTINCT event_id) FROM processed_events WHERE processed_at >= %(since)s),
       (SELECT count(*) FROM metrics WHERE ingested_at >= %(since)s),
       (SELECT count(*) FROM processed_events WHERE processed_at >= %(since)s)
"""
# A violation: a sensor's row whose seq is not above the seq of its previous row in ingest order.
# Scoped by `since`, only rows stored since then are compared, with each other: disorder that
# the store held before (another producer's input) is not this run's.
_ORDER_VIOLATIONS = """
SELECT count(*) FROM (
    SELECT seq, lag(seq) OVER (PARTITION BY sensor_id ORDER BY ingest_id) AS prev FROM metrics
    WHERE %(since)s::timestamptz IS NULL OR ingested_at >= %(since)s
) x WHERE prev IS NOT NULL AND seq <= prev
"""
_DEAD_LETTERS = """
SELECT coalesce(poison_label, '') AS label, reason, count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 1, 2
"""


def stored_ids(conn: psycopg.Connection[Any], since: datetime | None = None) -> Iterator[str]:
    """Every processed event id (streamed with a server-side cursor)."""
    with conn.cursor(name="audit_ids") as cur:
        cur.itersize = 50_000
        if since is None:
            cur.execute(_STORED_IDS)
        else:
            cur.execute(_STORED_IDS_SINCE, (since,))
        for (eid,) in cur:
            yield str(eid)


def duplicate_rows(conn: psycopg.Connection[Any], since: datetime | None = None) -> dict[str, int]:
    """Event ids stored more than once (in all, or among those stored since `since`)."""
    if since is None:
        row = conn.execute(_DUPLICATE_ROWS).fetchone()
    else:
        row = conn.execute(_DUPLICATE_ROWS_SINCE, {"since": since}).fetchone()
    assert row is not None
    return {
        "metrics": int(row[0]),
        "processed_events": int(row[1]),
        "metrics_rows": int(row[2]),
        "processed_rows": int(row[3]),
    }


def order_violations(conn: psycopg.Connection[Any], since: datetime | None = None) -> int:
    """Rows out of per-sensor order (in all, or among the rows stored since `since`)."""
    row = conn.execute(_ORDER_VIOLATIONS, {"since": since}).fetchone()
    return int(row[0]) if row else 0


def dead_letters(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int]]:
    return [(str(a), str(b), int(c)) for a, b, c in conn.execute(_DEAD_LETTERS).fetchall()]


def counters(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """(stored, duplicates, redeliveries, conflicts), from the read side's own query."""
    c = summaries.counters(conn)
    return int(c["stored"]), int(c["duplicates"]), int(c["redeliveries"]), int(c["conflicts"])
