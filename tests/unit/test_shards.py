"""How a batch is split across the consumer's parallel writers."""

from __future__ import annotations

import random

from sensorpipe.storage.batch import Columns


def batch(parts: list[int]) -> Columns:
    c = Columns()
    for i, p in enumerate(parts):
        c.append(f"e{i}", f"s{p}", i, float(i), i, p, 1000 + i, i)
    return c


def test_partitions_stay_whole_and_in_order_and_nothing_is_lost() -> None:
    rng = random.Random(7)
    parts = [rng.randrange(12) for _ in range(5000)]
    c = batch(parts)
    shards = c.shards(2)
    assert len(shards) == 2
    seen: dict[int, int] = {}
    for k, s in enumerate(shards):
        for p in s.kpart:
            assert seen.setdefault(p, k) == k  # a partition lives in one part only
        for p in set(s.kpart):
            offs = [o for o, q in zip(s.koff, s.kpart, strict=True) if q == p]
            assert offs == sorted(offs)  # Kafka order kept within a partition
    assert sorted(e for s in shards for e in s.event_id) == sorted(c.event_id)
    # columns stay aligned row by row
    for s in shards:
        for eid, off in zip(s.event_id, s.koff, strict=True):
            assert off == 1000 + int(eid[1:])


def test_parts_are_balanced_by_rows() -> None:
    c = batch([0] * 600 + [1] * 500 + [2] * 300 + [3] * 300 + [4] * 100)
    sizes = sorted(len(s) for s in c.shards(2))
    assert sizes == [900, 900]


def test_one_partition_or_one_writer_is_not_split() -> None:
    c = batch([5] * 10)
    assert c.shards(2) == [c]
    c = batch([1, 2, 3])
    assert c.shards(1) == [c]
    assert len(batch([1, 2]).shards(4)) == 2  # never an empty part
    assert batch([]).shards(2)[0].event_id == []
