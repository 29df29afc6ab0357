"""Reading dead letters back, and recording redrives (`sensorpipe dlq`, the audit).

A dead letter is keyed by its source position (Kafka partition and offset of the main
topic); `dlq_partition`/`dlq_offset` say where its copy sits on the dead-letter topic (null
for dead letters written before migration 013). Pages are newest first, by (dead_at,
source position), and bounded by the caller's limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class StoredDeadLetter:
    kafka_partition: int
    kafka_offset: int
    reason: str
    detail: str
    poison_label: str | None
    dead_at: datetime
    dlq_partition: int | None
    dlq_offset: int | None
    redriven_at: datetime | None
    redriven_event_id: str | None


_LIST = """
SELECT kafka_partition, kafka_offset, reason, detail, poison_label, dead_at, dlq_partition, dlq_offset,
       redriven_at, redriven_event_id
FROM dead_letters
WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)
  AND (%(since)s::timestamptz IS NULL OR dead_at >= %(since)s)
  AND (%(pending)s = false OR redriven_at IS NULL)
ORDER BY dead_at DESC, kafka_partition DESC, kafka_offset DESC
LIMIT %(limit)s
"""

_GET = """
SELECT kafka_partition, kafka_offset, reason, detail, poison_label, dead_at, dlq_partition, dlq_offset,
       redriven_at, redriven_event_id
FROM dead_letters WHERE kafka_partition = %s AND kafka_offset = %s
"""

# Counts by reason in buckets of `step` seconds from `since` on (the dead_at index bounds the
# scan); date_bin on the timestamp, as numeric arithmetic on its epoch costs several times more.
_TIMELINE = """
SELECT date_bin(%(step)s * interval '1 second', dead_at, timestamptz 'epoch') AS bucket, reason, count(*)::int8
FROM dead_letters WHERE dead_at >= %(since)s
GROUP BY 1, 2
"""

_REASONS = "SELECT reason, count(*)::int8 FROM dead_letters GROUP BY reason ORDER BY 2 DESC, 1"

# Only a dead letter not redriven yet is marked: a second redrive of it changes nothing.
_MARK = """
UPDATE dead_letters SET redriven_at = clock_timestamp(), redriven_event_id = %s
WHERE kafka_partition = %s AND kafka_offset = %s AND redriven_at IS NULL
"""

_REDRIVEN_IDS = "SELECT redriven_event_id FROM dead_letters WHERE redriven_event_id IS NOT NULL"


def page(
    conn: psycopg.Connection[Any],
    *,
    reason: str | None = None,
    since: datetime | None = None,
    pending_only: bool = False,
    limit: int = 100,
) -> list[StoredDeadLetter]:
    """The newest dead letters that match, at most `limit`."""
    params = {"reason": reason, "since": since, "pending": pending_only, "limit": limit}
    with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        return cur.execute(_LIST, params).fetchall()


def one(conn: psycopg.Connection[Any], partition: int, offset: int) -> StoredDeadLetter | None:
    with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        return cur.execute(_GET, (partition, offset)).fetchone()


def reasons(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    return [(str(r), int(n)) for r, n in conn.execute(_REASONS).fetchall()]


async def timeline(conn: psycopg.AsyncConnection[Any], since: datetime, step_s: int) -> list[tuple[int, str, int]]:
    """(bucket start in epoch seconds, reason, count) for each bucket of `step_s` with any."""
    async with conn.cursor() as cur:
        await cur.execute(_TIMELINE, {"since": since, "step": step_s})
        rows = await cur.fetchall()
    return [(int(b.timestamp()), str(r), int(n)) for b, r, n in rows]


def mark_redriven(conn: psycopg.Connection[Any], partition: int, offset: int, event_id: str) -> bool:
    """Record that the dead letter at this source position was produced back as `event_id`;
    False if it had been redriven already."""
    return conn.execute(_MARK, (event_id, partition, offset)).rowcount == 1


def redriven_ids(conn: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in conn.execute(_REDRIVEN_IDS).fetchall()}
