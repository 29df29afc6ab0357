"""What the consumer reads from librdkafka's statistics (`statistics.interval.ms`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """The group member's state and join state ("" when not in a group), the lag of each
    partition we own that librdkafka knows it for, and the bytes fetched ahead over them."""

    state: str = ""
    join_state: str = ""
    lag: dict[int, int] = field(default_factory=dict)
    queued_bytes: int = 0


def read_stats(stats: dict[str, Any], topic: str, assigned: set[int]) -> Stats:
    """The parts of one statistics document (parsed JSON) that concern `topic`'s partitions
    in `assigned`; a lag of -1 (unknown) is left out."""
    out = Stats()
    group = stats.get("cgrp")
    if group:
        out.state, out.join_state = group.get("state", ""), group.get("join_state", "")
    for p, info in stats.get("topics", {}).get(topic, {}).get("partitions", {}).items():
        if p == "-1" or int(p) not in assigned:
            continue
        out.queued_bytes += info.get("fetchq_size", 0)
        if info.get("consumer_lag", -1) >= 0:
            out.lag[int(p)] = info["consumer_lag"]
    return out
