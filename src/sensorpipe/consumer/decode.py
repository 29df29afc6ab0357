"""Decoding a batch of Kafka messages, as pure functions of the messages: valid events into
columns, poison into dead letters with the reason the full decoder names, and the messages at
positions already processed counted without being decoded (storage.positions)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from confluent_kafka import KafkaError, Message

from sensorpipe.contracts import events as ev
from sensorpipe.storage.batch import Columns, DeadLetter

log = logging.getLogger("sensorpipe.consumer")


@dataclass
class Batch:
    """One batch as read from Kafka: its valid events, its dead letters (and their messages,
    for the DLQ topic), and the positions it covers."""

    cols: Columns = field(default_factory=Columns)
    dead: list[DeadLetter] = field(default_factory=list)
    dlq: list[Message] = field(default_factory=list)
    first: dict[int, int] = field(default_factory=dict)  # partition -> first offset in the batch
    last: dict[int, int] = field(default_factory=dict)  # partition -> last offset in the batch
    known: dict[int, int] = field(default_factory=dict)  # partition -> messages at recorded positions
    consumed: int = 0
    # partition -> (first, last) offsets to record as processed with this batch, set when it
    # is handed to the writers (see ConsumerService._spans)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)


def decode(
    msgs: list[Message], decoder: ev.EventDecoder, window: ev.Window, through: Callable[[int, int], int]
) -> Batch:
    """The batch of `msgs`, in Kafka order. `through(partition, offset)` is the last offset of
    the recorded processed range holding that position (-1: none): the messages up to it are
    counted as known, not decoded. Every other message becomes a row or a dead letter; none
    is dropped. Events outside `window` are dead letters too."""
    batch = Batch()
    row = decoder.row_decoder(window)
    c = batch.cols
    # the columns' appends, bound once: this loop runs for every message
    eids, sids, tss, vals = c.event_id.append, c.sensor_id.append, c.ts_us.append, c.value.append
    seqs, parts, offs, hashes = c.seq.append, c.kpart.append, c.koff.append, c.chash.append
    first, last, known = batch.first, batch.last, batch.known
    # partition -> the last offset of the recorded range holding its first message in
    # this batch (-1: none); messages up to it are counted, not decoded
    skip: dict[int, int] = {}
    consumed = 0
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            continue
        # set on every data message; typing.cast is a call per message, the hint is free
        part: int = m.partition()  # type: ignore[assignment]
        off: int = m.offset()  # type: ignore[assignment]
        if part not in first:
            first[part] = off
            skip[part] = through(part, off)
        last[part] = off
        consumed += 1
        if off <= skip[part]:
            known[part] = known.get(part, 0) + 1
            continue
        key, value = m.key(), m.value()
        r = row(key, value)
        if r is not None:
            eids(r[0])
            sids(r[1])
            tss(r[2])
            vals(r[3])
            seqs(r[4])
            parts(part)
            offs(off)
            hashes(r[5])
            continue
        _slow_path(batch, m, decoder, window)
    batch.consumed = consumed
    bad = sorted(set(ev.bad_ids(c.sensor_id)) | set(ev.bad_ids(c.event_id)))
    if bad:
        _reject_rows(batch, msgs, bad, decoder, window)
    return batch


def _slow_path(batch: Batch, m: Message, decoder: ev.EventDecoder, window: ev.Window) -> None:
    """A message the fast row decoder refused: the full decoder names the reason, and it
    becomes a dead letter."""
    part, off = cast(int, m.partition()), cast(int, m.offset())
    out = decoder.decode_timed(m.key(), m.value(), window)
    if isinstance(out, ev.Poison):
        batch.dlq.append(m)
        batch.dead.append(DeadLetter(part, off, out.reason.value, out.detail, header(m, ev.H_POISON)))
    else:  # unreachable while the two paths agree; kept so no message is ever dropped
        e, ts = out
        batch.cols.append(e.event_id, e.sensor_id, ts, e.value, e.seq, part, off, ev.content_hash(e, ts))


def _reject_rows(
    batch: Batch, msgs: list[Message], bad: list[int], decoder: ev.EventDecoder, window: ev.Window
) -> None:
    """Move rows the fast path took but the id rule refuses to the dead letters, with the
    reason the full decoder gives; dead letters stay in Kafka order."""
    c = batch.cols
    at = {(c.kpart[i], c.koff[i]) for i in bad}
    bad_set = set(bad)
    batch.cols = c.take([i for i in range(len(c)) if i not in bad_set])
    for m in msgs:
        if m.error() is None and (m.partition(), m.offset()) in at:
            part, off = cast(int, m.partition()), cast(int, m.offset())
            out = decoder.decode_timed(m.key(), m.value(), window)
            reason, detail = (
                (out.reason.value, out.detail)
                if isinstance(out, ev.Poison)
                else (ev.Reason.BAD_ID.value, "id refused by the id rule")
            )
            batch.dlq.append(m)
            batch.dead.append(DeadLetter(part, off, reason, detail, header(m, ev.H_POISON)))
    dead, dlq = batch.dead, batch.dlq
    order = sorted(range(len(dead)), key=lambda i: (dead[i].kafka_partition, dead[i].kafka_offset))
    batch.dead = [dead[i] for i in order]
    batch.dlq = [dlq[i] for i in order]


def header_list(m: Message) -> list[tuple[str, str | bytes | None]]:
    h = m.headers()
    if h is None:
        return []
    return list(h.items()) if isinstance(h, dict) else list(h)


def header(m: Message, name: str) -> str | None:
    for k, v in header_list(m):
        if k == name and v is not None:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return None
