"""When the consumer must not write: the disk is near full, or the store is over its share.

Contract: `hold()` names the reason to pause consumption, or returns None. A held consumer
moves no offset and writes nothing, so the backlog stays in Kafka; it resumes by itself when
`hold()` returns None again. The guard only reads: free space is probed at most every
`check_s`, and the store's share is judged by size retention, which reports through
`over_budget`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensorpipe.contracts.disk import FsUsage, check_floor, fs_usage, human


@dataclass
class DiskGuard:
    watch: list[Path]
    floor: str | None  # a size or share of each filesystem; None: the default floor
    check_s: float
    probe: Callable[[Path], FsUsage] = fs_usage
    over_budget: str | None = None  # set by size retention when nothing more can be dropped
    _next: float = field(default=0.0, init=False)
    _low: str | None = field(default=None, init=False)
    free_bytes: int | None = field(default=None, init=False)  # least free space seen at the last probe

    def hold(self, now: float) -> str | None:
        if now >= self._next:
            self._next = now + self.check_s
            self._low = self._probe()
        return self._low or self.over_budget

    def _probe(self) -> str | None:
        try:
            check = check_floor(self.watch, self.floor, self.probe)
        except OSError as e:
            return f"free space of the watched folders unknown ({e})"
        self.free_bytes = check.least_free
        if not check.low:
            return None
        path, free, floor = check.low[0]
        return f"free space on {path} is {human(free)}, under the floor of {human(floor)}"


def never_hold() -> DiskGuard:
    """A guard that watches nothing (an external database whose disk we cannot see)."""
    return DiskGuard(watch=[], floor=None, check_s=3600.0)


@dataclass
class HighWater:
    """Where size retention starts dropping, below the share by what may arrive meanwhile.

    A pass of size retention runs every `interval_s`; between two passes the store grows by
    whatever the consumer writes. Dropping only once the files are *over* the share would
    overrun it by up to one interval's growth. So the mark sits below the share by twice the
    growth last seen over one interval, and at least `min_margin` of the share; it never goes
    below half the share.
    """

    interval_s: float
    min_margin: float = 0.02
    _last: tuple[float, int] | None = field(default=None, init=False)  # (time, bytes after the drops)
    _rate: float = field(default=0.0, init=False)  # bytes per second, the last positive growth seen

    def mark(self, share: int) -> int:
        margin = max(self.min_margin * share, 2 * self._rate * self.interval_s)
        return int(share - min(margin, share / 2))

    def observe(self, now: float, found: int, kept: int) -> None:
        """One pass: the files held `found` bytes before its drops and `kept` after them."""
        if self._last is not None and now > self._last[0]:
            t, before = self._last
            growth = (found - before) / (now - t)
            if growth > 0:
                self._rate = growth
        self._last = (now, kept)
