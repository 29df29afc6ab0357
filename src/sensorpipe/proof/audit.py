"""`sensorpipe audit`: a Jepsen-style check of the producer ledger against the topic and the store.

- lost: events the broker acknowledged (ledger status `acked`) that are not stored;
  deliberate poison is checked separately against the dead letters it should have become;
- phantom: stored events that no producer attempted (only meaningful when the ledgers cover
  every producer of the store; with `since`, only rows processed after that time count);
  an event a redrive produced back from the dead letters (`sensorpipe dlq redrive`) is
  accounted for by its dead letter, not phantom;
- duplicate rows: an event id more than once in `metrics` or `processed_events`;
- order: a sensor's stored rows, in ingest order, whose `seq` does not increase;
- with `since` (a demo's own run), duplicates and order are judged on the rows stored since
  then, so that what the store held before (another producer's disorder) is not counted;
- where a loss happened: for lost events, the topic is scanned from the beginning; an event
  found there was lost by the consumer, one not found was lost by Kafka (or never written);
- refused: an acknowledged event found on the topic at a position the consumer dead-lettered
  as out of its accepted time window (a producer's clock far off) was refused with its
  reason, as the contract says, and is counted as such, not as lost.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from sensorpipe.storage import audit as q
from sensorpipe.storage import deadletters, retention


@dataclass
class Ledgers:
    """What the producers attempted, from one or more ledger files."""

    acked: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)  # any status, including failed and unknown
    unknown: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    duplicates_acked: int = 0
    poison_acked: Counter[str] = field(default_factory=Counter)
    dropped: set[str] = field(default_factory=set)  # acked, stamped before the raw horizon

    @classmethod
    def read(cls, paths: Iterable[Path], horizon: str | None = None) -> Ledgers:
        """`horizon`: the raw horizon as the producer writes timestamps (ISO, milliseconds,
        Z); acknowledged events stamped before it were dropped by retention, not lost."""
        led = cls()
        for path in paths:
            with open(path) as f:
                for line in f:
                    kind, ident, status, *ts = line.rstrip("\n").split(",")
                    if horizon is not None and ts and ts[0] < horizon and kind != "p":
                        if status == "acked":
                            led.dropped.add(ident)
                        continue
                    if kind == "p":
                        if status == "acked":
                            led.poison_acked[ident] += 1
                        continue
                    led.attempted.add(ident)
                    if status == "acked":
                        if kind == "d":
                            led.duplicates_acked += 1
                        led.acked.add(ident)
                    elif status == "unknown":
                        led.unknown.add(ident)
                    else:
                        led.failed.add(ident)
        # an id acked once (original or duplicate) is acked, whatever its other copies did
        led.unknown -= led.acked
        led.failed -= led.acked | led.unknown
        led.dropped -= led.acked  # a copy stamped later than the horizon is still expected
        return led


@dataclass
class AuditReport:
    acked: int
    unknown: int
    failed: int
    stored: int
    stored_of_acked: int
    unknown_stored: int
    lost: int
    # acknowledged and stamped before the raw horizon: dropped with their day by retention, or,
    # still in Kafka when their day was dropped, dead-lettered as out of window; never lost
    dropped_by_retention: int
    lost_in_kafka: int
    lost_in_consumer: int
    phantom: int
    duplicate_rows_metrics: int
    duplicate_rows_processed: int
    order_violations: int
    poison_acked: int
    poison_dead_lettered: int
    poison_missing: int
    duplicates_sent: int
    counters: dict[str, int]
    lost_sample: list[str]
    # acknowledged, then dead-lettered as out of the accepted time window; never lost (with a
    # default, so that results recorded before it was counted still load)
    refused_out_of_window: int = 0

    @property
    def anomalies(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{self.lost} acknowledged events are not stored")
        if self.phantom:
            out.append(f"{self.phantom} stored events were never attempted")
        if self.duplicate_rows_metrics or self.duplicate_rows_processed:
            out.append("an event id is stored more than once")
        if self.order_violations:
            out.append(f"{self.order_violations} per-sensor order violations")
        if self.poison_missing:
            out.append(f"{self.poison_missing} acknowledged poison messages were not dead-lettered")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "anomalies": self.anomalies}


def locate_losses(bootstrap: str, topic: str, lost: set[str], timeout_s: float = 120.0) -> dict[str, tuple[int, int]]:
    """The lost ids that are on the topic (read from the beginning of every partition), each
    with the (partition, offset) of its first copy there."""
    if not lost:
        return {}
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sensorpipe-audit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    try:
        md = c.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])  # OFFSET 0: from the beginning
        eof: set[int] = set()
        found: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + timeout_s
        while len(eof) < len(parts) and time.monotonic() < deadline and len(found) < len(lost):
            for m in c.consume(10_000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(int(m.partition() or 0))
                    continue
                try:
                    eid = orjson.loads(m.value() or b"{}").get("event_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if eid in lost and eid not in found:
                    found[eid] = (int(m.partition() or 0), int(m.offset() or 0))
        return found
    finally:
        c.close()


def audit(dsn: str, bootstrap: str, topic: str, ledger_paths: list[Path], since: datetime | None = None) -> AuditReport:
    with psycopg.connect(dsn) as conn:
        h = retention.horizon(conn)
    horizon = None if h is None else h.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    led = Ledgers.read(ledger_paths, horizon)
    with psycopg.connect(dsn) as conn:
        stored = set(q.stored_ids(conn, since))
        dups = q.duplicate_rows(conn, since)
        violations = q.order_violations(conn, since)
        dead = q.dead_letters(conn)
        s, d, r, c = q.counters(conn)
        redriven = deadletters.redriven_ids(conn)
    lost = led.acked - stored
    on_topic = locate_losses(bootstrap, topic, lost)
    if on_topic:
        with psycopg.connect(dsn) as conn:
            refused_at = q.refused_positions(conn, list(on_topic.values()))
        refused = {eid for eid, pos in on_topic.items() if pos in refused_at}
        lost -= refused
        on_topic = {eid: pos for eid, pos in on_topic.items() if eid not in refused}
    else:
        refused = set()
    phantom = stored - led.attempted - redriven if ledger_paths else set()
    labelled: Counter[str] = Counter()
    for label, reason, n in dead:
        if label and label == reason:
            labelled[label] += n
    poison_missing = sum(max(0, n - labelled[label]) for label, n in led.poison_acked.items())
    return AuditReport(
        acked=len(led.acked),
        unknown=len(led.unknown),
        failed=len(led.failed),
        stored=len(stored),
        stored_of_acked=len(led.acked & stored),
        unknown_stored=len(led.unknown & stored),
        lost=len(lost),
        dropped_by_retention=len(led.dropped),
        lost_in_kafka=len(lost - on_topic.keys()),
        lost_in_consumer=len(on_topic),
        refused_out_of_window=len(refused),
        phantom=len(phantom),
        duplicate_rows_metrics=dups["metrics"],
        duplicate_rows_processed=dups["processed_events"],
        order_violations=violations,
        poison_acked=sum(led.poison_acked.values()),
        poison_dead_lettered=sum(labelled.values()),
        poison_missing=poison_missing,
        duplicates_sent=led.duplicates_acked,
        counters={"stored": s, "duplicates": d, "redeliveries": r, "conflicts": c},
        lost_sample=sorted(lost)[:10],
    )


def write_json(report: AuditReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
