"""Writing one batch: its dead letters first, then its rows through every writer connection.

Parts hold disjoint Kafka partitions, hence disjoint sensors, rollup rows and counters, so
their transactions do not wait on each other (only copies of one event id under two keys
can; PostgreSQL then settles it). The batch counts as written only when every part
committed: if one fails, the whole batch is rewound and re-read, and the parts that did
commit come back as redeliveries, which store nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from sensorpipe.consumer.deadletters import DeadLetters
from sensorpipe.consumer.decode import Batch
from sensorpipe.consumer.hooks import Hooks
from sensorpipe.consumer.parts import Writer
from sensorpipe.storage import positions
from sensorpipe.storage.batch import BatchResult, DeadLetter


class BatchWrite:
    """Runs on a writer thread of `pool`; the batch's first part is written on the calling
    thread, the others on the pool's remaining threads."""

    def __init__(self, writers: Sequence[Writer], pool: ThreadPoolExecutor, dead: DeadLetters, hooks: Hooks) -> None:
        self.writers = writers
        self.pool = pool
        self.dead = dead
        self.hooks = hooks

    def __call__(self, batch: Batch, slowdown_ms: int, topic_id: str | None) -> tuple[BatchResult, float]:
        """DLQ first, then the batch's rows, one transaction per part. Returns what was
        written and the seconds it took; raises the first failing part's error."""
        t0 = time.perf_counter()
        self.dead.publish(batch)
        # Every partition read, with its dead letters and recorded positions, goes to one
        # part: a range never claims a dead letter or row that another transaction holds.
        owner = batch.cols.owners(len(self.writers), also=batch.first)
        parts = batch.cols.shards(len(self.writers), owner)
        dead: list[list[DeadLetter]] = [[] for _ in parts]
        for d in batch.dead:
            dead[owner[d.kafka_partition]].append(d)
        pos = [recorded(batch, owner, i, topic_id) for i in range(len(parts))]
        others = [
            self.pool.submit(self.writers[i].write, part, dead[i], slowdown_ms, None, pos[i])
            for i, part in enumerate(parts[1:], 1)
        ]
        try:
            result = self.writers[0].write(
                parts[0], dead[0], slowdown_ms, lambda: self.hooks.failpoint("before_db_commit"), pos[0]
            )
        finally:
            wait(others)  # every part has finished, even when this one failed
        for f in others:
            result = result.plus(f.result())  # raises that part's error, if it failed
        return result, time.perf_counter() - t0


def recorded(batch: Batch, owner: dict[int, int], part: int, topic_id: str | None) -> positions.Positions | None:
    """What part `part` of the batch records: its partitions' spans and known positions
    (nothing when the topic's id is unknown)."""
    if topic_id is None:
        return None
    mine = [p for p in batch.spans if owner[p] == part]
    return positions.Positions(
        topic_id,
        spans={p: batch.spans[p] for p in mine},
        known={p: batch.known[p] for p in mine if p in batch.known},
    )
