"""The pipeline's clock: the wall clock, or a simulated one that runs faster from a chosen
start, so that a soak run can pass through days (partitions rolling over, retention of every
tier) in minutes.

Contract: producer and consumer of one run use the same clock (same start, same speed, same
origin within a second): the producer stamps events with it, and the consumer judges the
accepted window and "today" (for partitions and retention) by it. The API keeps the wall
clock; a simulated run's data is read with explicit ranges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SimClock:
    start: float  # the simulated epoch seconds at `origin`
    speed: float  # simulated seconds per real second
    origin: float  # real epoch seconds at which the simulation was at `start`

    def __call__(self) -> float:
        return self.start + (time.time() - self.origin) * self.speed


def make_clock(start: float | None, speed: float, origin: float | None) -> Callable[[], float]:
    """The wall clock unless a start is given."""
    if start is None:
        return time.time
    return SimClock(start, speed, origin if origin is not None else time.time())
