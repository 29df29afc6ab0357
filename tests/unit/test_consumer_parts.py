"""The consumer's small pieces: the failpoint hooks, librdkafka's statistics as read, and the
side connection's error handling (a fake connect)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from sensorpipe.consumer.hooks import Failpoints, Hooks, hooks_for
from sensorpipe.consumer.side import SideConnection
from sensorpipe.consumer.stats import read_stats
from sensorpipe.settings import ConsumerSettings


def test_a_failpoint_fires_at_its_own_point_in_the_nth_batch_only() -> None:
    kills: list[str] = []
    f = Failpoints("before_db_commit", 3, kill=lambda: kills.append("kill"))
    for point in ("poll", "before_db_commit", "after_db_commit", "before_db_commit"):
        f.failpoint(point)
    assert kills == [] and f.hits == 2
    f.failpoint("before_db_commit")
    assert kills == ["kill"]


def test_no_failpoint_unless_the_settings_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(hooks_for(ConsumerSettings())) is Hooks
    monkeypatch.setenv("SENSORPIPE_CONSUMER_FAILPOINT", "poll")
    chosen = hooks_for(ConsumerSettings())
    assert isinstance(chosen, Failpoints) and chosen.point == "poll" and chosen.after == 1


def test_statistics_give_our_partitions_lag_and_fetch_queue_only() -> None:
    raw = {
        "cgrp": {"state": "up", "join_state": "steady"},
        "topics": {
            "t": {
                "partitions": {
                    "0": {"consumer_lag": 5, "fetchq_size": 100},
                    "1": {"consumer_lag": -1, "fetchq_size": 50},  # lag unknown
                    "2": {"consumer_lag": 9, "fetchq_size": 7},  # not ours
                    "-1": {"consumer_lag": 0, "fetchq_size": 1000},  # librdkafka's unassigned bucket
                }
            },
            "other": {"partitions": {"0": {"consumer_lag": 1, "fetchq_size": 1}}},
        },
    }
    st = read_stats(raw, "t", {0, 1})
    assert (st.state, st.join_state, st.lag, st.queued_bytes) == ("up", "steady", {0: 5}, 150)
    assert read_stats({}, "t", {0}).state == ""


class FakeConn:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_side_connection_skips_the_block_on_a_database_error_and_reconnects_next_time() -> None:
    made: list[FakeConn] = []
    fail = [psycopg.OperationalError("refused")]

    def connect() -> Any:
        if fail:
            raise fail.pop()
        made.append(FakeConn())
        return made[-1]

    side = SideConnection(connect)
    ran: list[str] = []
    with side.reading("knobs not read") as conn:
        conn()
        ran.append("after connect")
    assert ran == []
    with side.reading("knobs not read") as conn:
        first = conn()
        raise psycopg.errors.QueryCanceled("statement timeout")
    assert first.closed and len(made) == 1  # dropped after the error
    with side.reading("knobs not read") as conn:
        assert conn() is conn() and conn() is made[1]
    with pytest.raises(ValueError), side.reading("not a database error") as conn:
        raise ValueError("a bug is not swallowed")
