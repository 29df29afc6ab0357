"""Topic bootstrap: create `sensor_metrics` and its DLQ, and refuse a mismatched layout."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from sensorpipe.contracts.disk import KafkaLimits
from sensorpipe.runtime.kafka import admin_client
from sensorpipe.runtime.procs import PlatformError
from sensorpipe.settings import KafkaSettings

BROKER_TIME = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(
    settings: KafkaSettings,
    topic: str | None = None,
    dlq_topic: str | None = None,
    partitions: int | None = None,
    limits: tuple[KafkaLimits, KafkaLimits] | None = None,
) -> None:
    """Create the main and dead-letter topics if missing (idempotent).

    `limits` (main, dead-letter) bound each partition's size; they are set on new topics and
    applied to existing ones, so a changed budget takes effect at the next start.

    Messages are stamped by the broker on append (LogAppendTime), on new topics and existing
    ones: lag in seconds and time retention then follow the broker's clock, whatever a
    producer's clock says (a producer ten minutes behind would otherwise show ten minutes of
    lag, and one far ahead keep its segments past retention).

    An existing main topic with another partition count is an error, never "fixed":
    adding partitions remaps sensor keys to new partitions, so events of one sensor
    would be split across two partitions and lose their order.
    """
    topic = topic or settings.topic
    dlq_topic = dlq_topic or settings.dlq_topic
    partitions = partitions or settings.partitions
    admin = admin_client(settings.bootstrap(), security_protocol=settings.security_protocol)
    try:
        md = admin.list_topics(timeout=10)
    except KafkaException as e:
        raise PlatformError(f"Kafka at {settings.bootstrap()} did not answer: {e}") from e
    rf = min(settings.replication_factor(), len(md.brokers))
    existing = {name: t for name, t in md.topics.items() if t.error is None}
    if topic in existing:
        _check_partitions(topic, len(existing[topic].partitions), partitions)
    min_isr = "2" if rf >= 3 else "1"
    sized = dict(zip((topic, dlq_topic), (lim.topic_config() for lim in limits), strict=True)) if limits else {}
    wanted = [
        NewTopic(
            n,
            num_partitions=partitions,
            replication_factor=rf,
            config={"min.insync.replicas": min_isr, **BROKER_TIME, **sized.get(n, {})},
        )
        for n in (topic, dlq_topic)
        if n not in existing
    ]
    for name in (topic, dlq_topic):
        if name in existing:
            _alter(admin, name, {**BROKER_TIME, **sized.get(name, {})})
    if wanted:
        _create(admin, wanted)


def _check_partitions(topic: str, have: int, partitions: int) -> None:
    if have != partitions:
        raise PlatformError(
            f"topic {topic!r} exists with {have} partitions, but {partitions} are configured. "
            f"Refusing to start: changing the partition count remaps sensor_id keys to other "
            f"partitions and silently breaks per-sensor ordering. Set SENSORPIPE_KAFKA_PARTITIONS={have}, "
            f"or recreate the topic deliberately."
        )


def _create(admin: AdminClient, wanted: list[NewTopic]) -> None:
    """Create the topics; return once every partition of each has a leader."""
    for name, fut in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                raise PlatformError(f"could not create topic {name!r}: {e}") from e
    # Creation returns before every broker knows the new leaders; clients that ask too early
    # get NOT_LEADER_FOR_PARTITION.
    deadline = time.monotonic() + 30
    names = [t.topic for t in wanted]
    while time.monotonic() < deadline:
        known = admin.list_topics(timeout=10).topics
        if all(
            n in known
            and known[n].error is None
            and known[n].partitions
            and all(p.leader >= 0 for p in known[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)
    raise PlatformError(f"topics {names} were created but have no leaders after 30s; see the broker log")


def _alter(admin: AdminClient, topic: str, config: dict[str, str]) -> None:
    """Set `config` on an existing topic, leaving its other settings as they are."""
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    for fut in admin.incremental_alter_configs([resource]).values():
        try:
            fut.result()
        except KafkaException as e:
            raise PlatformError(f"could not set {sorted(config)} on topic {topic!r}: {e}") from e
