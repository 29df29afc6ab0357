"""Correctness side by side: sensorpipe and the Connect peer (`proof.peer`) read the same
topic, fed with the same duplicates and poison, each into a database of its own; the report
says what each stored, overwrote, dead-lettered, or stopped on.

The feed, in two phases:
1. valid events; the same events sent again; event ids reused with another timestamp; event
   ids reused with the same timestamp and another value; one message of every poison kind
   of the contract (`producer.poison`). Both sinks then run until idle.
2. an event stamped 30 days ahead, which no day partition of either table holds, followed by
   valid events of the same sensor (so on the same partition, after it).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import psycopg
from confluent_kafka import Consumer, Producer

from sensorpipe.contracts.events import Reason, encode_event
from sensorpipe.producer.poison import BUILDERS
from sensorpipe.proof import peer
from sensorpipe.proof import results as res
from sensorpipe.proof.measure import topic_end
from sensorpipe.proof.peer_stage import wait_idle, worker
from sensorpipe.settings import KafkaSettings
from sensorpipe.storage import bench as bq
from sensorpipe.storage import peer as sq

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

SENSORS = 10


@dataclass
class Case:
    """What one case fed: its messages' positions, their event ids, and the value each id
    was first sent with."""

    name: str
    positions: list[tuple[int, int]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    first_value: dict[str, float] = field(default_factory=dict)


class Feed:
    """Produces the cases' messages, keyed by sensor, and records where each landed."""

    def __init__(self, k: KafkaSettings) -> None:
        self.k = k
        self.p = Producer({**k.producer_config(), "linger.ms": 5})
        self.rng = random.Random(7)
        self.now_ms = int(datetime.now(UTC).timestamp() * 1000)
        self.seq = dict.fromkeys(range(SENSORS), 0)

    def send(self, case: Case, key: bytes | None, value: bytes, event_id: str | None = None) -> None:
        def landed(err: object, msg: object) -> None:
            if err is None:
                case.positions.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

        self.p.produce(self.k.topic, value=value, key=key, on_delivery=landed)
        if event_id is not None:
            case.ids.append(event_id)

    def event(self, case: Case, sensor: int, event_id: str | None = None, ts_ms: int | None = None) -> bytes:
        """A valid event of `sensor`, sent; returns its bytes (to send again)."""
        sid, eid = f"sensor-{sensor:05d}", event_id or str(uuid.uuid4())
        value = round(self.rng.uniform(0, 100), 3)
        body = encode_event(sid, eid, ts_ms or self.now_ms - self.rng.randrange(60_000), value, self.seq[sensor])
        self.seq[sensor] += 1
        case.first_value.setdefault(eid, value)
        self.send(case, sid.encode(), body, eid)
        return body

    def flush(self) -> None:
        self.p.flush(30)


def phase_one(f: Feed) -> list[Case]:
    valid, again = Case("valid events"), Case("100 of them sent again (same id and content)")
    other_ts = Case("an event id reused with another timestamp")
    other_value = Case("an event id reused with the same timestamp and another value")
    sent: list[tuple[int, bytes]] = []
    for i in range(1000):
        sent.append((i % SENSORS, f.event(valid, i % SENSORS)))
    for (sensor, body), eid in zip(sent[:100], valid.ids[:100], strict=True):
        f.send(again, f"sensor-{sensor:05d}".encode(), body, eid)
    for i in range(20):
        sensor, eid = i % SENSORS, str(uuid.uuid4())
        f.event(other_ts, sensor, eid, f.now_ms - 5_000)
        f.event(other_ts, sensor, eid, f.now_ms - 4_000)
        eid = str(uuid.uuid4())
        body = f.event(other_value, sensor, eid, f.now_ms - 3_000)
        f.send(other_value, f"sensor-{sensor:05d}".encode(), body.replace(b'"value":', b'"value":1'), eid)
    cases = [valid, again, other_ts, other_value]
    for reason, build in BUILDERS.items():
        if reason is Reason.TIMESTAMP_OUT_OF_WINDOW:
            continue  # phase two
        case, eid = Case(f"poison: {reason.value}"), str(uuid.uuid4())
        key, value = build(f"sensor-{0:05d}", eid, f.now_ms)
        f.send(case, key, value, eid)
        cases.append(case)
    f.flush()
    return cases


def phase_two(f: Feed) -> list[Case]:
    ahead, after = Case("an event 30 days ahead (no day partition holds it)"), Case("100 valid events after it")
    f.event(ahead, 3, ts_ms=f.now_ms + 30 * 86_400_000)
    for _ in range(100):
        f.event(after, 3)
    f.flush()
    return [ahead, after]


# The configurations fed the same topic: the fastest on the drain, the same with Debezium's
# reduction buffer (its remedy for a batch holding one key twice), and plain JDBC batches.
CHECKED = [peer.SinkPlan(1, True), peer.SinkPlan(1, True, reduction_buffer=True), peer.SinkPlan(1, False)]


def correctness(b: Bench) -> res.Correctness:
    """sensorpipe and each checked configuration of the peer read one fed topic, side by side,
    each into its own database, until each is idle."""
    b.log("peer: correctness, the same duplicates and poison fed to sensorpipe and to the peer")
    k = b.topic("peercheck")
    ours_dsn = b.database("check_ours")
    workers: list[tuple[peer.Worker, str]] = []
    consumer = b.spawn(["consumer"], b.env(k, ours_dsn, SENSORPIPE_CONSUMER_GROUP_ID=f"bench-check-{k.topic}"))
    with ExitStack() as stack:
        stack.callback(consumer.wait, 60)
        stack.callback(consumer.terminate)
        for i, plan in enumerate(CHECKED):
            w, dsn = worker(b, k, f"check_peer{i}", plan)
            workers.append((stack.enter_context(w), dsn))
        for w, _ in workers:
            w.wait_running()
        feed = Feed(k)
        cases = phase_one(feed)
        _settle(ours_dsn, workers)
        cases += phase_two(feed)
        _settle(ours_dsn, workers)
        failed = [w.failed_tasks() for w, _ in workers]
        dead = [_peer_dead_letters(k.bootstrap(), w.target.dlq_topic) for w, _ in workers]
    ours_dead = bq.dead_letters(ours_dsn)
    rows = []
    for c in cases:
        ids = sorted(set(c.ids))
        peers = [_describe(c, sq.values_of(dsn, ids), d) for (_w, dsn), d in zip(workers, dead, strict=True)]
        rows.append(
            res.Outcome(
                case=c.name,
                fed=len(c.positions),
                ours=_describe(c, bq.values_of(ours_dsn, ids), ours_dead),
                peers=peers,
            )
        )
    return res.Correctness(peer_configs=[p.label for p in CHECKED], outcomes=rows, peer_failed=failed)


def _settle(ours_dsn: str, workers: list[tuple[peer.Worker, str]]) -> None:
    with psycopg.connect(ours_dsn, autocommit=True) as conn:
        wait_idle(lambda: (bq.stored(conn), bq.dead_lettered(conn)))
    for w, dsn in workers:
        wait_idle(_peer_state(w, dsn))


def _peer_state(w: peer.Worker, dsn: str) -> Callable[[], object]:
    """What changes while the peer works: its table, its dead letters, its failed tasks."""
    t = w.target
    return lambda: (sq.shape(dsn), topic_end(t.bootstrap, t.dlq_topic), tuple(w.failed_tasks()))


def _describe(c: Case, rows: list[tuple[str, float]], dead: dict[tuple[int, int], str]) -> str:
    """What a sink did with one case's messages, in words."""
    ids = {eid for eid, _ in rows}
    twice = len(rows) - len(ids)
    later = sum(1 for eid, v in rows if eid in c.first_value and v != c.first_value[eid])
    reasons = sorted({dead[p] for p in c.positions if p in dead})
    n_dead = sum(1 for p in c.positions if p in dead)
    parts = [f"rows stored: {len(rows):,}" if rows else "nothing stored"]
    if twice:
        parts.append(f"ids with two rows: {twice:,}")
    if later:
        parts.append(f"rows holding a later copy's value: {later:,}")
    if n_dead:
        parts.append(f"dead-lettered: {n_dead:,} ({', '.join(reasons)})")
    return "; ".join(parts)


def _text(v: str | bytes | None) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")


def _peer_dead_letters(bootstrap: str, topic: str) -> dict[tuple[int, int], str]:
    """(source partition, offset) -> exception class of each message in Connect's dead-letter
    topic (its context headers name them)."""
    total = topic_end(bootstrap, topic)
    out: dict[tuple[int, int], str] = {}
    if not total:
        return out
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-dlq-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 60
    try:
        while seen < total and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error() is not None:
                continue
            seen += 1
            headers = cast(list[tuple[str, bytes | None]], m.headers() or [])
            h = {name: _text(v) for name, v in headers}
            pos = (int(h.get("__connect.errors.partition", -1)), int(h.get("__connect.errors.offset", -1)))
            out[pos] = h.get("__connect.errors.exception.class.name", "?").rsplit(".", 1)[-1]
    finally:
        c.close()
    return out
