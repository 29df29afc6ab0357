"""What the consumer service is built from, as factories the wiring passes in.

The service coordinates a Kafka consumer, a producer for dead letters, database writers and
a side connection. It never constructs them itself: `kafka_parts()` builds the real ones,
and unit tests pass fakes that satisfy the protocols below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from sensorpipe.runtime.kafka import cluster_answers
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage.batch import BatchResult, Columns, DeadLetter
from sensorpipe.storage.positions import Positions
from sensorpipe.storage.writer import BatchWriter

log = logging.getLogger("sensorpipe.consumer")

# How long a probe of the cluster (is it there at all?) waits for an answer.
GROUP_PROBE_TIMEOUT_S = 5.0
# How long librdkafka may sit on stored offsets before committing them. Offsets are only
# *stored* by us, after the database commit; the commit itself runs in librdkafka's
# background, on revoke and on close, because a synchronous commit can block the batch loop
# for as long as the group coordinator moves. Lag is measured from committed offsets, so this
# interval adds up to its own length of events to it; docs/decisions/005 says why it is not
# shorter.
AUTO_COMMIT_INTERVAL_MS = 1_000


Rebalance = Callable[[Any, list[TopicPartition]], None]  # given the consumer it concerns


class KafkaConsumer(Protocol):
    """The part of confluent_kafka.Consumer the service uses."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: Rebalance | None = ...,
        on_revoke: Rebalance | None = ...,
        on_lost: Rebalance | None = ...,
    ) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition) -> None: ...
    def store_offsets(self, message: Message | None = ..., offsets: list[TopicPartition] | None = ...) -> None: ...
    def close(self) -> None: ...


class KafkaProducer(Protocol):
    """The part of confluent_kafka.Producer the dead-letter publisher uses."""

    def produce(
        self,
        topic: str,
        value: str | bytes | None = ...,
        key: str | bytes | None = ...,
        partition: int = ...,
        callback: Callable[[KafkaError | None, Message], None] | None = ...,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = ...,
        timestamp: int = ...,
        headers: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None = ...,
    ) -> None: ...
    def flush(self, timeout: float = ...) -> int: ...


class Writer(Protocol):
    """One database connection's writer (storage.writer.BatchWriter)."""

    def write(
        self,
        cols: Columns,
        dead: list[DeadLetter],
        slowdown_ms: int = 0,
        before_commit: Callable[[], None] | None = None,
        positions: Positions | None = None,
    ) -> BatchResult: ...
    def maintain(self, today: date) -> tuple[int, int]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Parts:
    """Factories for what the service uses. `consumer` and `producer` get librdkafka's
    configuration (the service adds its callbacks to it); `connect` opens the side
    connection (autocommit); `topic_id` is the topic's Kafka id or None when unknown;
    `cluster_answers` says whether a new client gets an answer from the cluster."""

    consumer: Callable[[dict[str, Any]], KafkaConsumer]
    producer: Callable[[dict[str, Any]], KafkaProducer]
    writers: Callable[[], Sequence[Writer]]
    connect: Callable[[], psycopg.Connection[Any]]
    topic_id: Callable[[], str | None]
    cluster_answers: Callable[[], bool]


def consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    """The group member's librdkafka configuration, without the service's callbacks."""
    return {
        "group.id": settings.group_id,
        # At-least-once, librdkafka's way: we store a partition's offset only after the
        # batch's transaction committed; auto-commit sends stored offsets every interval,
        # when partitions are revoked (not when lost) and on close.
        "enable.auto.commit": True,
        "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(1_000, settings.session_timeout_ms // 5),
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        # Bounds prefetch memory. It counts fetched bytes, which for a compressed topic
        # decompress into several times as many: see ConsumerSettings. The queue limit is
        # checked before a fetch, so one fetch response may overshoot it by its own size:
        # librdkafka's default of 50 MB per response, decompressed, is far larger than the
        # queue, and after a backlog it set the consumer's peak memory. A response is held
        # to the queue's size instead (the broker still returns a first record batch that
        # is larger, KIP-74, so no message is ever too big to fetch).
        "queued.max.messages.kbytes": settings.prefetch_kbytes,
        "fetch.max.bytes": settings.prefetch_kbytes * 1024,
        "fetch.wait.max.ms": 50,
        "statistics.interval.ms": 5_000,
        "log_level": 3,
    }


def kafka_parts(kafka: KafkaSettings, settings: ConsumerSettings, db: DatabaseSettings) -> Parts:
    """The real parts: librdkafka clients, one BatchWriter per writer connection."""
    rollups = (db.rollup_1m_days, db.rollup_1h_days)
    return Parts(
        consumer=lambda config: Consumer({**kafka.client_config(), **config}),
        producer=lambda config: Producer({**kafka.producer_config(), **config}),
        writers=lambda: [
            BatchWriter(
                db.dsn(), db.retention_days, settings.db_idle_tx_timeout_ms, rollups, settings.db_net_timeout_ms
            )
            for _ in range(settings.writers)
        ],
        connect=lambda: psycopg.connect(db.dsn(), autocommit=True, connect_timeout=3),
        topic_id=lambda: describe_topic(kafka),
        cluster_answers=lambda: cluster_answers(kafka.bootstrap(), GROUP_PROBE_TIMEOUT_S, kafka.security_protocol),
    )


def describe_topic(kafka: KafkaSettings) -> str | None:
    """The topic's Kafka id, which tells this topic from one recreated under its name."""
    try:
        admin = AdminClient(kafka.client_config())
        futures = admin.describe_topics(TopicCollection([kafka.topic]), request_timeout=10)
        return str(futures[kafka.topic].result(timeout=15).topic_id)
    except (KafkaException, TimeoutError) as e:
        log.warning("topic id of %s unknown (%s): positions are neither recorded nor skipped", kafka.topic, e)
        return None
