"""The Kafka positions a partition has been processed through (`processed_ranges`, migration 008).

A batch's part records, in its own transaction, the span of offsets it read from each of its
partitions; a consumer that reads a recorded position again counts it as a redelivery without
decoding or looking it up. This only ever skips work: a range that is missing or stale makes
the consumer take the full path, where `processed_events` absorbs the copy.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import psycopg

# A span extends the range that holds its first offset or ends just before it (never
# shrinking it), or becomes a range of its own. A consumer sends as a span's first offset the
# offset after its own last committed batch of that partition when it read on from there, so
# offsets that hold no message (transaction markers, compacted records) do not split ranges.
# Two consumers that both believe they own a partition (one of them fenced but not yet told)
# may insert the same range: the later one only extends it.
_RECORD = """
WITH b AS (
    SELECT * FROM unnest(%(part)s::int4[], %(first)s::int8[], %(last)s::int8[]) AS b(kpart, first_off, last_off)
),
grown AS (
    UPDATE processed_ranges r SET last_offset = b.last_off
    FROM b
    WHERE r.topic_id = %(topic)s AND r.kafka_partition = b.kpart
      AND r.first_offset <= b.first_off AND r.last_offset >= b.first_off - 1 AND r.last_offset < b.last_off
)
INSERT INTO processed_ranges AS t (topic_id, kafka_partition, first_offset, last_offset)
SELECT %(topic)s, kpart, first_off, last_off FROM b
WHERE NOT EXISTS (  -- the statement's snapshot: ranges as they were before `grown`
    SELECT 1 FROM processed_ranges r
    WHERE r.topic_id = %(topic)s AND r.kafka_partition = b.kpart
      AND r.first_offset <= b.first_off AND r.last_offset >= b.first_off - 1
)
ON CONFLICT (topic_id, kafka_partition, first_offset)
    DO UPDATE SET last_offset = greatest(t.last_offset, excluded.last_offset)
"""

_LOAD = """
SELECT kafka_partition, first_offset, last_offset FROM processed_ranges
WHERE topic_id = %s AND kafka_partition = ANY(%s)
ORDER BY kafka_partition, first_offset
"""


@dataclass
class Positions:
    """What one part of a batch read: recorded with the part's rows, in its transaction.

    `spans`: partition -> (first, last) offsets read, every message between them handled by
    this part. `known`: partition -> messages not decoded because their position was
    recorded already; the writer counts them as redeliveries."""

    topic_id: str
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    known: dict[int, int] = field(default_factory=dict)


def record(conn: psycopg.Connection[Any], p: Positions) -> None:
    """Extend `processed_ranges` by `p.spans`, inside the caller's transaction."""
    if not p.spans:
        return
    parts = sorted(p.spans)  # one order for every writer: row locks cannot deadlock
    conn.execute(
        _RECORD,
        {
            "topic": p.topic_id,
            "part": parts,  # a few elements: psycopg's own list adaptation is cheap here
            "first": [p.spans[k][0] for k in parts],
            "last": [p.spans[k][1] for k in parts],
        },
    )


class Ranges:
    """The recorded ranges of some partitions, as loaded: each partition's (first, last) pairs,
    sorted by first. Overlapping ranges are allowed."""

    def __init__(self) -> None:
        self._by_part: dict[int, list[tuple[int, int]]] = {}

    def load(self, conn: psycopg.Connection[Any], topic_id: str, partitions: list[int]) -> None:
        """(Re)load the ranges of `partitions` (replacing what was held for them)."""
        for p in partitions:
            self._by_part.pop(p, None)
        for part, first, last in conn.execute(_LOAD, (topic_id, partitions)):
            self._by_part.setdefault(part, []).append((first, last))

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self._by_part.pop(p, None)

    def through(self, partition: int, offset: int) -> int:
        """The last offset of a range holding `offset`, or -1 if none does: every position from
        `offset` to the returned one was processed."""
        spans = self._by_part.get(partition)
        if not spans:
            return -1
        best = -1
        for first, last in spans[: bisect.bisect_right(spans, (offset, 2**63))]:
            if first <= offset <= last and last > best:
                best = last
        return best
