"""The consumer's watch on its group membership: pure state, fed by hand."""

from __future__ import annotations

import threading
import time

from sensorpipe.consumer.group import GroupWatch, close_within


def test_a_member_out_of_the_steady_state_past_the_limit_is_stuck() -> None:
    w = GroupWatch(limit_s=16)
    assert w.observe(0, "up", "steady") and w.stuck(100) is None
    assert not w.observe(5, "up", "steady")
    w.observe(10, "up", "wait-unassign-call")  # a rebalance revokes
    w.observe(12, "up", "steady")  # and ends in time
    assert w.stuck(40) is None
    w.observe(50, "query-coord", "wait-incr-unassign-to-complete")  # lost while the coordinator was away
    w.observe(55, "up", "wait-incr-unassign-to-complete")  # the coordinator is back; the wait is not over
    assert w.stuck(65) is None and w.stuck(66) == 16
    w.restart()  # a new member: judged afresh
    assert w.stuck(100) is None and (w.state, w.join_state) == ("init", "init")


def test_every_state_out_of_steady_counts_until_steady_again() -> None:
    w = GroupWatch(limit_s=16)
    for t, state, join in [(0, "query-coord", "wait-sync"), (5, "query-coord", "init"), (10, "wait-coord", "init")]:
        w.observe(t, state, join)
    assert w.stuck(15) is None and w.stuck(16) == 16  # counted from the first
    w.observe(17, "up", "steady")
    assert w.stuck(100) is None


class Closing:
    def __init__(self, blocks: threading.Event | None) -> None:
        self.blocks, self.closed = blocks, False

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.wait()
        self.closed = True


def test_a_close_that_never_returns_is_left_behind() -> None:
    ok = Closing(None)
    assert close_within(ok, 5) and ok.closed
    release = threading.Event()
    stuck = Closing(release)
    t0 = time.monotonic()
    assert not close_within(stuck, 0.2)
    assert 0.2 <= time.monotonic() - t0 < 2 and not stuck.closed
    release.set()  # it finishes on its own thread whenever it can


def test_knobs_take_the_larger_slowdown_and_the_smaller_batch() -> None:
    from sensorpipe.consumer.knobs import Knobs
    from sensorpipe.contracts.config import PipelineConfig

    assert Knobs.effective(100, 20_000, None, None) == Knobs(100, 20_000, None)
    stored = PipelineConfig(consumer_slowdown_ms=2_000, consumer_batch_max=500)
    assert Knobs.effective(100, 20_000, stored, 7) == Knobs(2_000, 500, 7)
    assert Knobs.effective(3_000, 200, stored, 7) == Knobs(3_000, 200, 7)
    assert Knobs.effective(0, 20_000, PipelineConfig(), 8) == Knobs(0, 20_000, 8)
