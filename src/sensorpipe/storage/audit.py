"""Read-only queries of the audit: what the store holds, and whether it holds it once and in order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from sensorpipe.storage import queries

_STORED_IDS = "SELECT event_id FROM processed_events"
_STORED_IDS_SINCE = "SELECT event_id FROM processed_events WHERE processed_at >= %s"
_DUPLICATE_ROWS = """
SELECT (SELECT count(*) - count(DISTINCT event_id) FROM metrics) AS metrics_dups,
       (SELECT count(*) - count(DISTINCT event_id) FROM processed_events) AS processed_dups,
       (SELECT count(*) FROM metrics) AS metrics_rows,
       (SELECT count(*) FROM processed_events) AS processed_rows
"""
# A violation: a sensor's row whose seq is not above the seq of its previous row in ingest order.
_ORDER_VIOLATIONS = """
SELECT count(*) FROM (
    SELECT seq, lag(seq) OVER (PARTITION BY sensor_id ORDER BY ingest_id) AS prev FROM metrics
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


def duplicate_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(_DUPLICATE_ROWS).fetchone()
    assert row is not None
    return {
        "metrics": int(row[0]),
        "processed_events": int(row[1]),
        "metrics_rows": int(row[2]),
        "processed_rows": int(row[3]),
    }


def order_violations(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_ORDER_VIOLATIONS).fetchone()
    return int(row[0]) if row else 0


def dead_letters(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int]]:
    return [(str(a), str(b), int(c)) for a, b, c in conn.execute(_DEAD_LETTERS).fetchall()]


def counters(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """(stored, duplicates, redeliveries, conflicts), from the read side's own query."""
    c = queries.counters(conn)
    return int(c["stored"]), int(c["duplicates"]), int(c["redeliveries"]), int(c["conflicts"])
