"""Fault injection for the chaos suite, as an object the wiring passes in.

The service calls `hooks.failpoint(name)` at each crash point; the default `Hooks` does
nothing, so production code runs no test logic. `Failpoints` (chosen by
`SENSORPIPE_CONSUMER_FAILPOINT`) SIGKILLs the process at one of them:

- `poll`: a batch was fetched, nothing of it written;
- `before_db_commit`: the batch's statements ran, its transaction is open;
- `after_db_commit`: the transaction committed, the offsets are not.

Recovery must lose and duplicate nothing at each of them.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from sensorpipe.settings import ConsumerSettings

log = logging.getLogger("sensorpipe.consumer")


class Hooks:
    """No fault injected."""

    def failpoint(self, point: str) -> None:
        """Called at each crash point; does nothing here."""


class Failpoints(Hooks):
    """Kill the process at `point`, in the `after`-th batch to reach it."""

    def __init__(self, point: str, after: int, kill: Callable[[], None] | None = None) -> None:
        self.point = point
        self.after = after
        self.hits = 0
        self._kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))

    def failpoint(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits >= self.after:
            log.warning("failpoint %s reached in batch %d: SIGKILL", point, self.hits)
            self._kill()


def hooks_for(settings: ConsumerSettings) -> Hooks:
    """The hooks the settings ask for: none unless a failpoint is set."""
    if settings.failpoint is None:
        return Hooks()
    return Failpoints(settings.failpoint, settings.failpoint_after_batches)
