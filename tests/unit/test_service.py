"""consumer.service against fakes (no broker, no database): what is written, dead-lettered,
stored as an offset, recorded as a span and rewound, batch by batch.

The fakes are injected through `Parts` and `Hooks`; the messages are real confluent_kafka
Message objects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Message, TopicPartition

from sensorpipe.consumer.hooks import Failpoints, Hooks
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.parts import Parts
from sensorpipe.consumer.service import ConsumerService
from sensorpipe.contracts import events as ev
from sensorpipe.runtime.memory import Trimmer
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage.batch import BatchResult, Columns, DeadLetter
from sensorpipe.storage.positions import Positions

TOPIC = "sensor_metrics"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
Script = list[Message] | Callable[["FakeConsumer"], None]


def event(part: int, off: int, sensor: str = "s1", value: bytes | None = None) -> Message:
    body = {"sensor_id": sensor, "event_id": f"{sensor}-{off}", "timestamp": NOW.isoformat(), "value": 1.0, "seq": off}
    raw = orjson.dumps(body) if value is None else value
    return Message(topic=TOPIC, partition=part, offset=off, key=sensor.encode(), value=raw)


class FakeConsumer:
    """Returns one scripted step per consume(): messages, or a rebalance to run."""

    def __init__(self, log: list[str]) -> None:
        self.script: list[Script] = []
        self.callbacks: dict[str, Any] = {}
        self.assigned: list[int] = []
        self.seeks: list[tuple[int, int]] = []
        self.stored: list[dict[int, int]] = []
        self.log = log

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def rebalance(self, kind: str, parts: list[int]) -> None:
        if kind == "assign":
            self.assigned += parts
        else:
            self.assigned = [p for p in self.assigned if p not in parts]
        self.callbacks[kind](self, [TopicPartition(TOPIC, p) for p in parts])

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        while self.script:
            step = self.script.pop(0)
            if isinstance(step, list):
                return step
            step(self)
        return []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.partition, partition.offset))

    def store_offsets(self, message: Message | None = None, offsets: list[TopicPartition] | None = None) -> None:
        self.log.append("offsets")
        self.stored.append({tp.partition: tp.offset for tp in offsets or []})

    def close(self) -> None: ...


class FakeProducer:
    def __init__(self, log: list[str]) -> None:
        self.sent: list[dict[str, Any]] = []
        self.unacked = 0
        self.acked = 0
        self.log = log
        self._pending: list[Any] = []

    def produce(self, topic: str, **kw: Any) -> None:
        self.sent.append({"topic": topic, **kw, "headers": dict(kw["headers"])})
        self._pending.append(kw["on_delivery"])

    def flush(self, timeout: float = -1) -> int:
        if self._pending:
            self.log.append("dlq acked" if not self.unacked else "dlq unacked")
        if not self.unacked:  # the broker's acknowledgements, each with its position
            for cb in self._pending:
                cb(None, _Acked(0, self.acked))
                self.acked += 1
        self._pending.clear()
        return self.unacked


@dataclass
class _Acked:
    """A delivered message as a delivery report gives it: its partition and offset."""

    _partition: int
    _offset: int

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeWriter:
    def __init__(self, log: list[str]) -> None:
        self.parts: list[tuple[list[str], list[DeadLetter], Positions | None]] = []
        self.fail: list[Exception] = []  # raised by the next writes, one each
        self.resets = 0
        self.log = log
        self.lock = threading.Lock()

    def write(
        self,
        cols: Columns,
        dead: list[DeadLetter],
        slowdown_ms: int = 0,
        before_commit: Callable[[], None] | None = None,
        positions: Positions | None = None,
    ) -> BatchResult:
        with self.lock:
            if self.fail:
                raise self.fail.pop(0)
            self.log.append("rows")
            self.parts.append((list(cols.event_id), list(dead), positions))
        if before_commit is not None:
            before_commit()
        return BatchResult(len(cols), 0, 0, 0, len(dead))

    def maintain(self, today: date) -> tuple[int, int]:
        return 0, 0

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None: ...


class Rig:
    """A service on fakes, with partitions 0 to 2 assigned."""

    def __init__(self, hooks: Hooks | None = None) -> None:
        self.log: list[str] = []
        self.consumer = FakeConsumer(self.log)
        self.producer = FakeProducer(self.log)
        self.writers = [FakeWriter(self.log), FakeWriter(self.log)]

        def no_database() -> psycopg.Connection[Any]:
            raise psycopg.OperationalError("no database in unit tests")

        parts = Parts(
            consumer=lambda config: self.consumer,
            producer=lambda config: self.producer,
            writers=lambda: self.writers,
            connect=no_database,
            topic_id=lambda: "topic-id",
            cluster_answers=lambda: True,
        )
        self.svc = ConsumerService(
            KafkaSettings(topic=TOPIC),
            ConsumerSettings(metrics_port=0, writers=2),
            DatabaseSettings(),
            ConsumerMetrics(),
            clock=NOW.timestamp,
            trimmer=Trimmer(30.0, None),
            parts=parts,
            hooks=hooks,
        )
        self.stop = threading.Event()
        self.stop.set()  # a retry's backoff returns at once
        self.svc.start()
        self.consumer.script.append(lambda c: c.rebalance("assign", [0, 1, 2]))

    def step(self, *script: Script) -> BatchResult | None:
        self.consumer.script += list(script)
        return self.svc.step(self.stop)

    def written(self) -> list[str]:
        return sorted(e for w in self.writers for ids, _, _ in w.parts for e in ids)

    def spans(self) -> dict[int, tuple[int, int]]:
        return {p: s for w in self.writers for _, _, pos in w.parts if pos for p, s in pos.spans.items()}


def test_a_batch_is_written_before_its_offsets_are_stored() -> None:
    rig = Rig()
    assert rig.step([event(0, 10), event(0, 11), event(1, 5, "s2")]) is None  # in flight
    assert rig.consumer.stored == []
    result = rig.step([])  # settles it
    assert result == BatchResult(3, 0, 0, 0, 0)
    assert rig.written() == ["s1-10", "s1-11", "s2-5"]
    assert rig.consumer.stored == [{0: 12, 1: 6}]
    assert rig.log.index("offsets") > rig.log.index("rows")
    assert rig.spans() == {0: (10, 11), 1: (5, 5)}


def test_poison_is_dead_lettered_with_its_reason_before_any_row_is_written() -> None:
    rig = Rig()
    rig.step([event(0, 1), event(0, 2, value=b"{not json"), event(1, 3, "s2")])
    result = rig.step([])
    assert result is not None and (result.stored, result.dead) == (2, 1)
    (sent,) = rig.producer.sent
    assert sent["value"] == b"{not json" and sent["key"] == b"s1"
    assert sent["headers"][ev.H_REASON] == ev.Reason.MALFORMED_JSON.value
    assert (sent["headers"][ev.H_SOURCE_PARTITION], sent["headers"][ev.H_SOURCE_OFFSET]) == ("0", "2")
    assert rig.log[:2] == ["dlq acked", "rows"]
    dead = [d for w in rig.writers for _, ds, _ in w.parts for d in ds]
    assert [(d.kafka_partition, d.kafka_offset) for d in dead] == [(0, 2)]  # recorded with the rows
    assert [(d.dlq_partition, d.dlq_offset) for d in dead] == [(0, 0)]  # where the broker put it
    assert rig.consumer.stored == [{0: 3, 1: 4}]


def test_an_unacknowledged_dead_letter_writes_nothing_and_rewinds() -> None:
    rig = Rig()
    rig.producer.unacked = 1
    rig.step([event(0, 1, value=b"[]"), event(0, 2)])
    assert rig.step([event(2, 7)]) is None  # the failed batch, and the one read behind it
    assert rig.written() == [] and rig.consumer.stored == []
    assert sorted(rig.consumer.seeks) == [(0, 1), (2, 7)]
    assert all(w.resets == 1 for w in rig.writers)
    rig.producer.unacked = 0
    rig.step([event(0, 1, value=b"[]"), event(0, 2), event(2, 7)])  # re-read after the rewind
    rig.step([])
    assert rig.written() == ["s1-2", "s1-7"] and rig.consumer.stored == [{0: 3, 2: 8}]


def test_a_failed_write_rewinds_each_partition_to_its_first_offset_in_both_batches() -> None:
    rig = Rig()
    rig.writers[0].fail.append(psycopg.OperationalError("server closed the connection"))
    rig.writers[1].fail.append(psycopg.OperationalError("server closed the connection"))
    rig.step([event(0, 10), event(1, 20, "s2")])
    assert rig.step([event(0, 12), event(2, 30, "s3")]) is None
    assert sorted(rig.consumer.seeks) == [(0, 10), (1, 20), (2, 30)]
    assert rig.consumer.stored == [] and rig.svc.metrics.retries._value.get() == 1


def test_spans_reach_back_over_offsets_that_hold_no_message() -> None:
    rig = Rig()
    rig.step([event(0, 10), event(0, 11)])
    rig.step([event(0, 15)])  # 12 to 14: transaction markers, never delivered
    rig.step([])
    spans = [pos.spans for w in rig.writers for _, _, pos in w.parts if pos and 0 in pos.spans]
    assert spans == [{0: (10, 11)}, {0: (12, 15)}]
    assert rig.consumer.stored == [{0: 12}, {0: 16}]


def test_offsets_of_a_lost_partition_are_not_stored() -> None:
    rig = Rig()
    rig.step([event(0, 10), event(1, 20, "s2")])
    rig.step(lambda c: c.rebalance("lost", [1]), [])  # lost while the batch is in flight
    assert rig.consumer.stored == [{0: 11}]
    assert rig.written() == ["s1-10", "s2-20"]  # written; partition 1's next owner re-reads it


def test_a_revoke_settles_the_batch_in_flight_first() -> None:
    rig = Rig()
    rig.step([event(0, 10), event(1, 20, "s2")])
    rig.step(lambda c: c.rebalance("revoke", [1]), [])
    assert rig.consumer.stored == [{0: 11, 1: 21}]  # committed while partition 1 was still ours


def test_the_after_commit_failpoint_fires_before_the_offsets_are_stored() -> None:
    kills: list[int] = []
    rig = Rig(Failpoints("after_db_commit", 2, kill=lambda: kills.append(len(rig.consumer.stored))))
    rig.step([event(0, 1)])
    rig.step([event(0, 2)])
    rig.step([])
    assert kills == [1]  # in the second batch, with only the first one's offsets stored
