"""Wiring of `sensorpipe dlq list|show|redrive`: settings in, a table or a report out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from sensorpipe.contracts import events as ev
from sensorpipe.dlq import payload
from sensorpipe.dlq.redrive import Outcome, Redrive, window
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import deadletters as store
from sensorpipe.storage.deadletters import StoredDeadLetter

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a span ago: 90s, 15m, 2h, 7d."""
    if m := _AGO.match(text.strip()):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-11-30T12:00:00Z) nor a span ago (15m, 2h, 7d)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def parse_position(text: str) -> tuple[int, int]:
    """A source position, PARTITION@OFFSET (as `dlq list` prints it)."""
    m = re.fullmatch(r"(\d+)[@:](\d+)", text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a position: give PARTITION@OFFSET, e.g. 3@1200")
    return int(m.group(1)), int(m.group(2))


def _where(d: StoredDeadLetter) -> str:
    return f"{d.kafka_partition}@{d.kafka_offset}"


def list_dead(db: DatabaseSettings, reason: str | None, since: datetime | None, limit: int) -> None:
    with psycopg.connect(db.dsn()) as conn:
        rows = store.page(conn, reason=reason, since=since, limit=limit)
        counts = store.reasons(conn)
    table = Table("source", "dead at", "reason", "label", "redriven", "detail", title="dead letters, newest first")
    for d in rows:
        redriven = d.redriven_at.isoformat(timespec="seconds") if d.redriven_at else ""
        table.add_row(
            _where(d), d.dead_at.isoformat(timespec="seconds"), d.reason, d.poison_label or "", redriven, d.detail[:80]
        )
    out = Console()
    out.print(table)
    out.print("by reason: " + (", ".join(f"{r} {n:,}" for r, n in counts) or "none"), highlight=False)


def show_dead(db: DatabaseSettings, kafka: KafkaSettings, position: tuple[int, int]) -> bool:
    """Print one dead letter and its original message; False if there is none there."""
    with psycopg.connect(db.dsn()) as conn:
        d = store.one(conn, *position)
    out = Console(highlight=False, markup=False, soft_wrap=True)  # a payload is printed as it is
    if d is None:
        return False
    out.print(f"source {kafka.topic} {_where(d)}, dead at {d.dead_at.isoformat()}")
    out.print(f"reason {d.reason}: {d.detail}")
    if d.redriven_at is not None:
        out.print(f"redriven {d.redriven_at.isoformat()} as {d.redriven_event_id}")
    if d.dlq_partition is None or d.dlq_offset is None:
        out.print("payload: unknown (dead-lettered before positions were recorded)")
        return True
    out.print(f"copy on {kafka.dlq_topic} {d.dlq_partition}@{d.dlq_offset}")
    try:
        original = payload.read(kafka.client_config(), kafka.dlq_topic, d.dlq_partition, d.dlq_offset)
    except payload.PayloadError as e:
        out.print(f"payload: {e}")
        return True
    out.print(f"key: {payload.render(original.key)}")
    for k, v in original.headers:
        out.print(f"header {k}: {payload.render(v)}")
    out.print(f"value:\n{payload.render(original.value)}")
    return True


def redrive_dead(
    db: DatabaseSettings,
    kafka: KafkaSettings,
    consumer: ConsumerSettings,
    reason: str | None,
    since: datetime | None,
    limit: int,
    dry_run: bool,
) -> list[Outcome]:
    reader = payload.Reader(kafka.client_config(), kafka.dlq_topic)
    redrive = Redrive(
        read=reader.read,
        decoder=ev.EventDecoder(consumer.max_message_bytes),
        window=window(db.retention_days * 86_400, consumer.future_window_s),
    )
    producer = Producer({**kafka.producer_config(), "log_level": 0})
    try:
        with psycopg.connect(db.dsn()) as conn:
            dead = store.page(conn, reason=reason, since=since, pending_only=True, limit=limit)
            outcomes = redrive.run(conn, dead, producer, kafka.topic, dry_run)
    finally:
        reader.close()
    table = Table(
        "source", "reason", "verdict", "event id", "detail", title="redrive" + (" (dry run)" if dry_run else "")
    )
    for o in outcomes:
        table.add_row(_where(o.dead), o.dead.reason, o.verdict, o.event_id or "", o.detail[:80])
    Console().print(table)
    return outcomes
