"""Publishing a batch's poison messages to the dead-letter topic.

Each dead letter is the original message (key, value and headers) plus headers that say why
and where it came from. `publish()` returns only once the broker acknowledged every one of
them: a poison message's offset is never committed before its dead letter is safe.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from confluent_kafka import KafkaError, Message

from sensorpipe.consumer.decode import Batch, header_list
from sensorpipe.consumer.parts import KafkaProducer
from sensorpipe.contracts import events as ev

DETAIL_MAX = 1024  # characters of a reason's detail kept in its header
FLUSH_S = 30.0


class TransientError(RuntimeError):
    """A broker or database problem: retry the batch, never dead-letter it."""


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def publish(self, batch: Batch) -> None:
        """Produce every poison message of the batch and wait for the broker's acks; raises
        TransientError if any is not acknowledged. Each dead letter then carries its
        position on the dead-letter topic."""
        if not batch.dlq:
            return
        failures: list[str] = []
        at: dict[int, tuple[int, int]] = {}

        def on_delivery(i: int, err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                at[i] = (int(msg.partition() or 0), int(msg.offset() or 0))

        for i, (m, d) in enumerate(zip(batch.dlq, batch.dead, strict=True)):
            headers: list[tuple[str, str | bytes | None]] = [*header_list(m)]
            headers += [
                (ev.H_REASON, d.reason),
                (ev.H_DETAIL, d.detail[:DETAIL_MAX]),
                (ev.H_SOURCE_TOPIC, m.topic() or ""),
                (ev.H_SOURCE_PARTITION, str(d.kafka_partition)),
                (ev.H_SOURCE_OFFSET, str(d.kafka_offset)),
            ]
            self.producer.produce(
                self.topic, key=m.key(), value=m.value(), headers=headers, on_delivery=partial(on_delivery, i)
            )
        remaining = self.producer.flush(FLUSH_S)
        if remaining or failures:
            raise TransientError(f"DLQ produce failed ({remaining} unacked, errors: {failures[:3]})")
        batch.dead = [replace(d, dlq_partition=at[i][0], dlq_offset=at[i][1]) for i, d in enumerate(batch.dead)]

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
