"""Read-only queries of the audit: what the store holds, and whether it holds it once and in order.

The store has two tiers of readings (migration 012): rows, and the chunks of compacted days.
Each question is asked of both; while nothing is compacted, the rows' own SQL answers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import psycopg

from sensorpipe.contracts.events import Reason
from sensorpipe.storage import summaries
from sensorpipe.storage.chunks import Chunk
from sensorpipe.storage.compaction import micros_to_dt

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
_ANY_COMPACTED = "SELECT EXISTS (SELECT 1 FROM compacted_days)"
_CHUNKS = "SELECT sensor_id, data FROM metrics_chunks"
_HOT_ORDER = """
SELECT sensor_id, ingest_id, seq, event_id FROM metrics WHERE %(since)s::timestamptz IS NULL OR ingested_at >= %(since)s
"""
_DEAD_LETTERS = """
SELECT coalesce(poison_label, '') AS label, reason, count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 1, 2
"""


def any_compacted(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(_ANY_COMPACTED).fetchone()
    return bool(row and row[0])


def compacted_rows(conn: psycopg.Connection[Any], since: datetime | None = None) -> Iterator[tuple[Any, ...]]:
    """Every compacted reading, every field restored: (sensor_id, event_id, ts, value, seq,
    kafka_partition, kafka_offset, ingest_id, ingested_at), as the rows of `metrics` hold them;
    with `since`, those stored since then."""
    with conn.cursor(name="audit_chunks") as cur:
        cur.itersize = 64
        cur.execute(_CHUNKS)
        for sensor, data in cur:
            r = Chunk(data).rows()
            for i, eid in enumerate(r.event_id):
                ingested = micros_to_dt(int(r.ingested[i]))
                if since is not None and ingested < since:
                    continue
                yield (
                    sensor,
                    eid,
                    micros_to_dt(int(r.ts[i])),
                    float(r.value[i]),
                    int(r.seq[i]),
                    int(r.kpart[i]),
                    int(r.koff[i]),
                    int(r.ingest_id[i]),
                    ingested,
                )


def stored_ids(conn: psycopg.Connection[Any], since: datetime | None = None) -> Iterator[str]:
    """Every stored event id: claimed in processed_events, or compacted (streamed)."""
    with conn.cursor(name="audit_ids") as cur:
        cur.itersize = 50_000
        if since is None:
            cur.execute(_STORED_IDS)
        else:
            cur.execute(_STORED_IDS_SINCE, (since,))
        for (eid,) in cur:
            yield str(eid)
    if any_compacted(conn):
        for row in compacted_rows(conn, since):
            yield row[1]


def duplicate_rows(conn: psycopg.Connection[Any], since: datetime | None = None) -> dict[str, int]:
    """Event ids stored more than once (in all, or among those stored since `since`)."""
    if since is None:
        row = conn.execute(_DUPLICATE_ROWS).fetchone()
    else:
        row = conn.execute(_DUPLICATE_ROWS_SINCE, {"since": since}).fetchone()
    assert row is not None
    metrics_dups = int(row[0])
    if any_compacted(conn):  # an id in both tiers, or twice in the chunks, counts too
        ids = [r[3] for r in _hot_order(conn, since)] + [r[1] for r in compacted_rows(conn, since)]
        metrics_dups = len(ids) - len(set(ids))
    return {
        "metrics": metrics_dups,
        "processed_events": int(row[1]),
        "metrics_rows": int(row[2]),
        "processed_rows": int(row[3]),
    }


def order_violations(conn: psycopg.Connection[Any], since: datetime | None = None) -> int:
    """Rows out of per-sensor order (in all, or among the rows stored since `since`)."""
    if any_compacted(conn):
        return _order_violations_both(conn, since)
    row = conn.execute(_ORDER_VIOLATIONS, {"since": since}).fetchone()
    return int(row[0]) if row else 0


def _hot_order(conn: psycopg.Connection[Any], since: datetime | None) -> list[tuple[Any, ...]]:
    return list(conn.execute(_HOT_ORDER, {"since": since}).fetchall())


def _order_violations_both(conn: psycopg.Connection[Any], since: datetime | None) -> int:
    """As _ORDER_VIOLATIONS, over the rows and the compacted readings together."""
    rows = [(s, i, q) for s, i, q, _e in _hot_order(conn, since)]
    rows += [(r[0], r[7], r[4]) for r in compacted_rows(conn, since)]
    rows.sort()
    return sum(1 for a, b in pairwise(rows) if a[0] == b[0] and b[2] <= a[2])


def dead_letters(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int]]:
    return [(str(a), str(b), int(c)) for a, b, c in conn.execute(_DEAD_LETTERS).fetchall()]


_REFUSED = """
SELECT d.kafka_partition, d.kafka_offset
FROM dead_letters d
JOIN unnest(%s::integer[], %s::bigint[]) AS p(kafka_partition, kafka_offset) USING (kafka_partition, kafka_offset)
WHERE d.reason = %s
"""


def refused_positions(conn: psycopg.Connection[Any], positions: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of the (partition, offset) positions dead-lettered as out of the time window."""
    parts = [p for p, _ in positions]
    offsets = [o for _, o in positions]
    rows = conn.execute(_REFUSED, (parts, offsets, Reason.TIMESTAMP_OUT_OF_WINDOW.value)).fetchall()
    return {(int(p), int(o)) for p, o in rows}


def counters(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """(stored, duplicates, redeliveries, conflicts), from the read side's own query."""
    c = summaries.counters(conn)
    return int(c["stored"]), int(c["duplicates"]), int(c["redeliveries"]), int(c["conflicts"])
