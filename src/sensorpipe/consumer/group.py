"""Watching the consumer's group membership from librdkafka's statistics."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaException


@dataclass
class GroupWatch:
    """Notices a group membership that does not come back by itself.

    librdkafka rejoins the group after a lost session on its own. But a member that lost its
    session while the coordinator was away (a broker frozen, then back while its coordinator
    reloads the group) can stay out of the group for good: in join state
    wait-incr-unassign-to-complete, or querying for a coordinator that the cluster does serve,
    with no assignment, no error, and a close() that may never return. `stuck()` reports a
    member that stayed out of the steady state for longer than `limit_s`, which no healthy
    rebalance takes (the caller passes the rebalance timeout plus a session); whether the
    cluster answers at all is the caller's to check, since during a broker outage waiting is
    all a new member could do either.
    """

    limit_s: float
    state: str = "init"
    join_state: str = "init"
    _since: float | None = field(default=None, init=False)

    def observe(self, now: float, state: str, join_state: str) -> bool:
        """Record the group's state; True when it changed."""
        changed = (state, join_state) != (self.state, self.join_state)
        self.state, self.join_state = state, join_state
        if state == "up" and join_state == "steady":
            self._since = None
        elif self._since is None:
            self._since = now
        return changed

    def stuck(self, now: float) -> float | None:
        """Seconds out of the steady state, once that is longer than the limit."""
        if self._since is None or now - self._since < self.limit_s:
            return None
        return now - self._since

    def restart(self) -> None:
        """A new member: nothing is known of it yet."""
        self._since = None
        self.state = self.join_state = "init"


class Closable(Protocol):
    def close(self) -> object: ...


def close_within(c: Closable, timeout_s: float) -> bool:
    """Close `c`, waiting at most `timeout_s`. A Kafka consumer stuck in the group state that
    made _rejoin replace it can wait in close() forever; it is then left closing on a daemon
    thread. Returns whether it closed."""

    def close() -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            c.close()

    t = threading.Thread(target=close, name="kafka-close", daemon=True)
    t.start()
    t.join(timeout_s)
    return not t.is_alive()
