"""Redrive: judge dead letters again against the event contract as it stands now (the
consumer's size limit and time window), and produce the ones that pass back to the main
topic with their original key, value and headers.

Safe to repeat: the consumer's dedupe stores each event id once, so a copy produced twice
is ignored as a duplicate. A dead letter is marked redriven, with the event id it became,
only after the broker has acknowledged its copy; a crash in between leaves it unmarked, and
the next redrive sends it again, which dedupe absorbs. The audit counts a stored event
whose id a redrive produced as redriven, not as phantom.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message

from sensorpipe.consumer.parts import KafkaProducer
from sensorpipe.contracts import events as ev
from sensorpipe.dlq.payload import Original, PayloadError
from sensorpipe.storage import deadletters as store
from sensorpipe.storage.deadletters import StoredDeadLetter

# What the consumer added when it dead-lettered the message; the copy goes back without it.
DLQ_HEADERS = frozenset({ev.H_REASON, ev.H_DETAIL, ev.H_SOURCE_TOPIC, ev.H_SOURCE_PARTITION, ev.H_SOURCE_OFFSET})
H_REDRIVEN_FROM = "sensorpipe.redriven.from"  # "<partition>@<offset>" of the first delivery
FLUSH_S = 30.0


@dataclass
class Outcome:
    dead: StoredDeadLetter
    verdict: str  # passes | redriven | still poison | already redriven | no payload | not acknowledged
    detail: str = ""
    event_id: str | None = None
    original: Original | None = None


@dataclass
class Redrive:
    read: Callable[[int, int], Original]  # a dead-letter topic position -> the message there
    decoder: ev.EventDecoder
    window: Callable[[], ev.Window]

    def judge(self, d: StoredDeadLetter) -> Outcome:
        if d.redriven_at is not None:
            return Outcome(d, "already redriven", event_id=d.redriven_event_id)
        if d.dlq_partition is None or d.dlq_offset is None:
            return Outcome(d, "no payload", "dead-lettered before positions were recorded")
        try:
            original = self.read(d.dlq_partition, d.dlq_offset)
        except PayloadError as e:
            return Outcome(d, "no payload", str(e))
        out = self.decoder.decode(original.key, original.value, self.window())
        if isinstance(out, ev.Poison):
            return Outcome(d, "still poison", f"{out.reason.value}: {out.detail}", original=original)
        return Outcome(d, "passes", event_id=out.event_id, original=original)

    def run(
        self,
        conn: psycopg.Connection[Any],
        dead: list[StoredDeadLetter],
        sender: KafkaProducer,
        topic: str,
        dry_run: bool,
    ) -> list[Outcome]:
        outcomes = [self.judge(d) for d in dead]
        passing = [o for o in outcomes if o.verdict == "passes"]
        if dry_run or not passing:
            return outcomes
        acked: set[int] = set()

        def on_delivery(i: int, err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                acked.add(i)

        for i, o in enumerate(passing):
            assert o.original is not None
            sender.produce(
                topic,
                key=o.original.key,
                value=o.original.value,
                headers=_headers(o),
                on_delivery=partial(on_delivery, i),
            )
        sender.flush(FLUSH_S)
        for i, o in enumerate(passing):
            if i in acked and o.event_id is not None:
                store.mark_redriven(conn, o.dead.kafka_partition, o.dead.kafka_offset, o.event_id)
                o.verdict = "redriven"
            else:
                o.verdict, o.detail = "not acknowledged", "the broker did not take the copy; run the redrive again"
        conn.commit()
        return outcomes


def _headers(o: Outcome) -> list[tuple[str, str | bytes | None]]:
    assert o.original is not None
    kept = [(k, v) for k, v in o.original.headers if k not in DLQ_HEADERS]
    return [*kept, (H_REDRIVEN_FROM, f"{o.dead.kafka_partition}@{o.dead.kafka_offset}".encode())]


def window(past_s: int, future_s: int) -> Callable[[], ev.Window]:
    """The consumer's window as of the moment it is asked for."""
    return lambda: ev.Window(int(time.time() * 1_000_000), past_s, future_s)
