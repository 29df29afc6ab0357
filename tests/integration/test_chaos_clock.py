"""Skewed clocks: producers whose clocks run ten minutes ahead, then ten minutes behind, on
the same sensors one after the other, then two beyond the consumer's accepted window (two
days ahead, eight days behind with seven days of retention).

The skew is the producer's own clock (SENSORPIPE_CLOCK_*, contracts.clock), which stamps
every event it sends. Kafka's record times are the broker's (the topics are LogAppendTime),
so a host clock would change nothing more. libfaketime cannot shift a whole producer here:
librdkafka's timed waits misbehave under it (a poll returns at once, a flush never does).

What must hold: per-sensor order by `seq` even where a sensor's timestamps step back; lag
in seconds never negative and never the skew (the topics are stamped by the broker);
events beyond the window dead-lettered with their reason and counted by the audit as
refused, never lost; and the audit of the other scenarios (chaos_rig). `make test` runs
the fast run, `make chaos` the full one.
"""

from __future__ import annotations

import signal
import time

from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

from sensorpipe.runtime.kafka import admin_client
from sensorpipe.runtime.pipeline import PipelineMonitor

from .chaos_rig import FULL, Rig, assert_clean, rig, wait_exit
from .helpers import scalar

__all__ = ["rig"]  # the fixture

MINUTE, DAY = 60, 86_400
ACCEPTED = {"+10m": 10 * MINUTE, "-10m": -10 * MINUTE}
REFUSED = {"+2d": 2 * DAY, "-8d": -8 * DAY}
PAUSE_S = 5.0  # the consumer is stopped this long in each accepted phase, to build a backlog


def skewed(offset_s: float) -> dict[str, str]:
    """The environment of a producer whose clock runs `offset_s` off the true one."""
    now = time.time()
    return {"SENSORPIPE_CLOCK_START": str(now + offset_s), "SENSORPIPE_CLOCK_ORIGIN": str(now)}


def _lag_seconds(monitor: PipelineMonitor) -> list[float]:
    s = monitor.latest
    return [] if s is None else [p.lag_seconds for p in s.partitions]


def _accepted_phase(rig: Rig, monitor: PipelineMonitor, offset: str) -> dict[str, float]:
    """A producer `offset` off for a while; midway the consumer stops for PAUSE_S, and the
    lag in seconds is sampled meanwhile."""
    producer = rig.producer(env=skewed(ACCEPTED[offset]))
    (consumer,) = rig.running_consumers()
    time.sleep(10 if FULL else 5)
    seen: list[float] = []
    consumer.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < PAUSE_S:
            seen += _lag_seconds(monitor)
            time.sleep(0.25)
    finally:
        consumer.send_signal(signal.SIGCONT)
    time.sleep(20 if FULL else 8)
    seen += _lag_seconds(monitor)
    producer.send_signal(signal.SIGTERM)
    assert wait_exit(producer, 60, "the skewed producer's stop") == 0
    assert seen and min(seen) >= 0, f"{offset}: negative lag in seconds ({min(seen, default=None)})"
    # The backlog's oldest message waited about PAUSE_S: neither hidden (a clock ahead) nor
    # ten minutes old (a clock behind).
    assert 1.0 <= max(seen) <= PAUSE_S + 30, f"{offset}: lag in seconds up to {max(seen)} for a {PAUSE_S}s pause"
    return {"max_lag_s": max(seen)}


def _refused_phase(rig: Rig, offset: str) -> int:
    """A producer `offset` off, beyond the window, for a few seconds; returns its acked events."""
    producer = rig.producer(rate=500, poison_ratio=0, env=skewed(REFUSED[offset]))
    time.sleep(5)
    producer.send_signal(signal.SIGTERM)
    assert wait_exit(producer, 60, "the skewed producer's stop") == 0
    ledger = rig.ledgers[-1].read_text().splitlines()
    return len({line.split(",")[1] for line in ledger if line.split(",")[2] == "acked"})


def _stamped_by(rig: Rig) -> set[str]:
    admin = admin_client(rig.bootstrap)
    found = set()
    for name in (rig.topics.main, rig.topics.dlq):
        resource = ConfigResource(ResourceType.TOPIC, name)
        for entries in admin.describe_configs([resource]).values():
            found.add(entries.result()["message.timestamp.type"].value)
    return found


def test_producers_with_skewed_clocks(rig: Rig) -> None:
    assert _stamped_by(rig) == {"LogAppendTime"}, "the topics take the producers' record times"
    rig.consumer()
    monitor = PipelineMonitor(
        {"bootstrap.servers": rig.bootstrap}, rig.topics.main, rig.topics.dlq, rig.group, lambda: None, 0.25
    )
    monitor.start()
    try:
        phases = {offset: _accepted_phase(rig, monitor, offset) for offset in ACCEPTED}
    finally:
        monitor.stop()
    refused = {offset: _refused_phase(rig, offset) for offset in REFUSED}
    backwards = int(
        scalar(
            rig.dsn,
            "SELECT count(*) FROM (SELECT ts < lag(ts) OVER (PARTITION BY sensor_id ORDER BY seq) AS back"
            " FROM metrics) x WHERE back",
        )
    )
    rig.figures.update(skews=phases, refused_acked=refused, timestamps_stepping_back=backwards)
    report = rig.finish()
    assert_clean(report)
    assert backwards > 0, "no sensor's timestamps stepped back: the clocks were not skewed"
    assert all(refused.values()), f"a producer beyond the window had nothing acknowledged: {refused}"
    assert report.refused_out_of_window == sum(refused.values()), "refused events not all dead-lettered"
