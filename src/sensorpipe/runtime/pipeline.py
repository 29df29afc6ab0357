"""Pipeline health, sampled in the background: the API's built-in replacement for Kafka UI.

A sampler thread reads, every `interval_s`: the high watermarks of the main topic, the
consumer group's committed offsets, the age of the oldest unconsumed message of each
lagging partition (by peeking at the message at the committed offset), the group's state
and members, the DLQ topic size, and the store's `stored` counter. `GET /api/pipeline`
returns the latest sample, so the endpoint costs no Kafka round trip. The demos sample the
pipeline with it too, which is why it lives with the platform rather than in `api/`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

log = logging.getLogger("sensorpipe.runtime.pipeline")

TREND_S = 600.0


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    high_watermark: int
    committed: int | None
    lag: int
    lag_seconds: float
    stalled: bool


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: list[int]


@dataclass(frozen=True)
class Sample:
    at: float
    topic: str
    group: str
    partitions: list[PartitionLag]
    total_lag: int
    group_state: str
    members: list[Member]
    dlq_messages: int
    produced_per_s: float | None
    consumed_per_s: float | None
    stored_per_s: float | None
    trend: list[tuple[float, int]]
    drain_seconds: float | None
    error: str | None = None
    dlq_end: int = 0  # the sum of the DLQ topic's high watermarks: its rate is the dead-letter rate

    @property
    def stalled(self) -> list[int]:
        return [p.partition for p in self.partitions if p.stalled]


@dataclass
class _PartState:
    committed: int | None = None
    advanced_at: float = field(default_factory=time.time)


class PipelineMonitor:
    def __init__(
        self,
        client: Mapping[str, str | int | float | bool],
        topic: str,
        dlq_topic: str,
        group: str,
        stored_total: Callable[[], int | None],
        interval_s: float = 1.0,
        stall_after_s: float = 15.0,
    ) -> None:
        """`client`: the Kafka client settings (bootstrap servers, security protocol)."""
        self.topic, self.dlq_topic, self.group = topic, dlq_topic, group
        self.stored_total = stored_total
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        conf: dict[str, str | int | float | bool] = {
            **client,
            "log_level": 0,
            "socket.timeout.ms": 3000,
        }
        self._admin = AdminClient(conf)
        # Reads the group's committed offsets without joining the group.
        self._offsets = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
        # Peeks at the oldest unconsumed message, in a group of its own that never commits.
        # It needs one message per lagging partition, so it asks for 4 KB per partition:
        # with librdkafka's default of 1 MB, each sample of a lagging topic reads and parses
        # megabytes (docs/decisions/007-read-paths.md). The broker still returns a whole
        # first record batch when it is larger than the limit (KIP-74), so a big batch never
        # blocks the peek.
        self._peek = Consumer(
            {
                **conf,
                "group.id": f"sensorpipe-api-peek-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "max.partition.fetch.bytes": 4096,
            }
        )
        # partition -> (offset, timestamp of the message there): a message's timestamp never
        # changes, so a partition whose committed offset has not moved is not peeked again.
        self._peeked: dict[int, tuple[int, float]] = {}
        self._parts: dict[int, _PartState] = {}
        self._trend: deque[tuple[float, int]] = deque()
        self._prev: tuple[float, int, int, int | None] | None = None  # (t, sum hw, sum committed, stored)
        self.latest: Sample | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=10)
        for c in (self._offsets, self._peek):
            with contextlib.suppress(RuntimeError, KafkaException):
                c.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.latest = self.sample()
            except (KafkaException, RuntimeError) as e:
                log.warning("pipeline sample failed: %s", e)
                if self.latest is not None:
                    self.latest = Sample(**{**self.latest.__dict__, "error": str(e)})
            self._stop.wait(max(0.05, self.interval_s - (time.monotonic() - t0)))

    def _watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        md = self._offsets.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return {p: self._offsets.get_watermark_offsets(TopicPartition(topic, p), timeout=5) for p in t.partitions}

    def sample(self) -> Sample:
        now = time.time()
        marks = self._watermarks(self.topic)
        parts = sorted(marks)
        committed = {
            tp.partition: (tp.offset if tp.offset >= 0 else None)
            for tp in self._offsets.committed([TopicPartition(self.topic, p) for p in parts], timeout=5)
        }
        oldest = self._oldest_unconsumed(marks, committed)
        rows = []
        for p in parts:
            lo, hi = marks[p]
            c = committed.get(p)
            lag = hi - (c if c is not None else lo)
            st = self._parts.setdefault(p, _PartState(c, now))
            if c != st.committed:
                st.committed, st.advanced_at = c, now
            if lag <= 0:
                lag_s = 0.0
            elif p in oldest:
                lag_s = max(0.0, now - oldest[p])
            else:
                lag_s = now - st.advanced_at
            stalled = lag > 0 and now - st.advanced_at >= self.stall_after_s
            rows.append(PartitionLag(p, hi, c, max(lag, 0), round(lag_s, 3), stalled))
        total = sum(r.lag for r in rows)
        self._trend.append((now, total))
        while self._trend and self._trend[0][0] < now - TREND_S:
            self._trend.popleft()
        state, members = self._group()
        dlq_marks = self._watermarks(self.dlq_topic).values()
        dlq = sum(hi - lo for lo, hi in dlq_marks)
        stored = self.stored_total()
        sum_hw = sum(hi for _, hi in marks.values())
        sum_c = sum(c for c in committed.values() if c is not None)
        produced = consumed = stored_rate = None
        if self._prev is not None:
            dt = now - self._prev[0]
            if dt > 0:
                produced = (sum_hw - self._prev[1]) / dt
                consumed = (sum_c - self._prev[2]) / dt
                if stored is not None and self._prev[3] is not None:
                    stored_rate = (stored - self._prev[3]) / dt
        self._prev = (now, sum_hw, sum_c, stored)
        return Sample(
            now,
            self.topic,
            self.group,
            rows,
            total,
            state,
            members,
            dlq,
            produced,
            consumed,
            stored_rate,
            list(self._trend),
            self._drain_estimate(now),
            dlq_end=sum(hi for _, hi in dlq_marks),
        )

    def _drain_estimate(self, now: float) -> float | None:
        """Seconds to zero lag at the rate it fell over the last 30 s; None if it is not falling."""
        recent = [(t, lag) for t, lag in self._trend if t >= now - 30]
        if len(recent) < 2:
            return None
        (t0, l0), (t1, l1) = recent[0], recent[-1]
        if l1 == 0:
            return 0.0
        if l1 >= l0 or t1 <= t0:
            return None
        return l1 / ((l0 - l1) / (t1 - t0))

    def _oldest_unconsumed(
        self, marks: dict[int, tuple[int, int]], committed: dict[int, int | None]
    ) -> dict[int, float]:
        """Timestamp (epoch s) of the message at the committed offset of each lagging partition."""
        out: dict[int, float] = {}
        targets = []
        for p, (lo, hi) in marks.items():
            start = committed.get(p)
            start = lo if start is None else max(start, lo)
            if start >= hi:
                continue
            known = self._peeked.get(p)
            if known is not None and known[0] == start:
                out[p] = known[1]
            else:
                targets.append(TopicPartition(self.topic, p, start))
        if not targets:
            return out
        starts = {tp.partition: tp.offset for tp in targets}  # the partitions still to peek
        try:
            self._peek.assign(targets)
            deadline = time.monotonic() + 1.0
            while starts and time.monotonic() < deadline:
                for m in self._peek.consume(len(targets), timeout=0.2):
                    p = int(m.partition() or 0)
                    if m.error() is not None or p not in starts:
                        continue
                    start = starts.pop(p)
                    _kind, ts_ms = m.timestamp()
                    if ts_ms > 0:
                        out[p] = ts_ms / 1000
                        if m.offset() == start:  # not a later one (the committed offset held no message)
                            self._peeked[p] = (start, out[p])
        finally:
            self._peek.unassign()
        return out

    def _group(self) -> tuple[str, list[Member]]:
        try:
            desc = self._admin.describe_consumer_groups([self.group], request_timeout=5)[self.group].result()
        except KafkaException as e:
            return f"unknown ({e.args[0].name()})", []
        state = str(desc.state).rsplit(".", 1)[-1].lower()
        members = [
            Member(
                m.member_id,
                m.client_id,
                m.host,
                sorted(
                    tp.partition
                    for tp in (m.assignment.topic_partitions if m.assignment else [])
                    if tp.topic == self.topic
                ),
            )
            for m in desc.members
        ]
        return state, members


def as_dict(s: Sample) -> dict[str, Any]:
    return {
        "at": s.at,
        "topic": s.topic,
        "group": s.group,
        "partitions": [p.__dict__ for p in s.partitions],
        "total_lag": s.total_lag,
        "group_state": s.group_state,
        "members": [m.__dict__ for m in s.members],
        "dlq_messages": s.dlq_messages,
        "produced_per_s": s.produced_per_s,
        "consumed_per_s": s.consumed_per_s,
        "stored_per_s": s.stored_per_s,
        "trend": [{"at": t, "lag": lag} for t, lag in s.trend],
        "drain_seconds": s.drain_seconds,
        "stalled_partitions": s.stalled,
        "error": s.error,
    }
