"""Watching the consumer's group membership from librdkafka's statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

# Join states in which librdkafka waits on itself (its fetchers to stop, its own commits, the
# application's assign call), not on the broker: a healthy client leaves them in moments.
LOCAL_WAITS = frozenset(
    {"wait-assign-call", "wait-unassign-call", "wait-unassign-to-complete", "wait-incr-unassign-to-complete"}
)


@dataclass
class GroupWatch:
    """Notices a group membership that does not come back by itself.

    librdkafka rejoins the group after a lost session on its own. But a member that lost its
    session while the coordinator was away (a broker frozen, then back) can stay in
    wait-incr-unassign-to-complete for good: no assignment, no error, and a close() that never
    returns. The waits on the broker (finding the coordinator, joining, syncing) are left to
    librdkafka's own retries; `stuck()` reports a member that stayed in one of its local waits
    (LOCAL_WAITS) for longer than `limit_s`, judged from librdkafka's statistics.
    """

    limit_s: float
    state: str = "init"
    join_state: str = "init"
    _since: float | None = field(default=None, init=False)

    def observe(self, now: float, state: str, join_state: str) -> bool:
        """Record the group's state; True when it changed."""
        changed = (state, join_state) != (self.state, self.join_state)
        self.state, self.join_state = state, join_state
        if join_state not in LOCAL_WAITS:
            self._since = None
        elif self._since is None:
            self._since = now
        return changed

    def stuck(self, now: float) -> float | None:
        """Seconds in a local wait, once that is longer than the limit."""
        if self._since is None or now - self._since < self.limit_s:
            return None
        return now - self._since

    def restart(self) -> None:
        """A new member: nothing is known of it yet."""
        self._since = None
        self.state = self.join_state = "init"
