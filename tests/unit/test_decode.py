"""consumer.decode: a batch of real Kafka message objects (no broker) into rows and dead
letters, with known positions counted and not decoded."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from confluent_kafka import Message

from sensorpipe.consumer.decode import Batch, decode, header
from sensorpipe.contracts import events as ev

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WINDOW = ev.Window(int(NOW.timestamp() * 1_000_000), 86_400, 300)


def _event(sensor: str, n: int, **over: object) -> bytes:
    body = {"sensor_id": sensor, "event_id": f"{sensor}-{n}", "timestamp": NOW.isoformat(), "value": 1.5, "seq": n}
    return orjson.dumps({**body, **over})


def _msg(part: int, off: int, value: bytes | None, key: bytes | None = b"s1", **kw: object) -> Message:
    return Message(topic="t", partition=part, offset=off, key=key, value=value, **kw)


def _decode(msgs: list[Message], through: dict[int, int] | None = None) -> Batch:
    known = through or {}
    return decode(msgs, ev.EventDecoder(4096), WINDOW, lambda part, off: known.get(part, -1))


def test_valid_events_become_columns_in_kafka_order() -> None:
    b = _decode([_msg(0, 10, _event("s1", 1)), _msg(3, 7, _event("s2", 5), key=b"s2"), _msg(0, 11, _event("s1", 2))])
    assert b.cols.event_id == ["s1-1", "s2-5", "s1-2"]
    assert (b.cols.kpart, b.cols.koff, b.cols.seq) == ([0, 3, 0], [10, 7, 11], [1, 5, 2])
    assert b.cols.ts_us == [WINDOW.now_us] * 3 and b.cols.value == [1.5] * 3
    assert (b.first, b.last, b.consumed, b.dead) == ({0: 10, 3: 7}, {0: 11, 3: 7}, 3, [])


def test_poison_becomes_dead_letters_with_the_reason_and_its_label() -> None:
    msgs = [
        _msg(0, 1, b"{not json", headers=[(ev.H_POISON, b"malformed")]),
        _msg(0, 2, _event("s1", 2), key=b"other"),
        _msg(0, 3, _event("s1", 3, timestamp="1999-01-01T00:00:00+00:00")),
        _msg(0, 4, None),
        _msg(0, 5, _event("s1", 5)),
    ]
    b = _decode(msgs)
    assert b.cols.event_id == ["s1-5"]
    reasons = [(d.kafka_offset, d.reason) for d in b.dead]
    assert reasons == [
        (1, ev.Reason.MALFORMED_JSON.value),
        (2, ev.Reason.KEY_MISMATCH.value),
        (3, ev.Reason.TIMESTAMP_OUT_OF_WINDOW.value),
        (4, ev.Reason.EMPTY.value),
    ]
    assert b.dead[0].poison_label == "malformed" and b.dead[1].poison_label is None
    assert [m.offset() for m in b.dlq] == [1, 2, 3, 4]
    assert b.consumed == 5


def test_messages_at_recorded_positions_are_counted_not_decoded() -> None:
    # offsets 5..7 of partition 2 lie in a processed range ending at 7; 8 does not
    msgs = [_msg(2, off, b"{garbage that would be poison") for off in (5, 6, 7)] + [_msg(2, 8, _event("s1", 8))]
    b = _decode(msgs, through={2: 7})
    assert b.known == {2: 3} and b.dead == [] and b.cols.koff == [8]
    assert b.consumed == 4 and (b.first, b.last) == ({2: 5}, {2: 8})


def test_ids_the_rule_refuses_are_moved_to_the_dead_letters_in_kafka_order() -> None:
    msgs = [
        _msg(1, 1, _event("s1", 1, event_id='has"quote')),
        _msg(0, 9, b"[]"),
        _msg(1, 2, _event("s1", 2)),
    ]
    b = _decode(msgs)
    assert b.cols.event_id == ["s1-2"]
    assert [(d.kafka_partition, d.kafka_offset) for d in b.dead] == [(0, 9), (1, 1)]
    assert b.dead[1].reason == ev.Reason.BAD_ID.value
    assert [(m.partition(), m.offset()) for m in b.dlq] == [(0, 9), (1, 1)]


def test_errors_from_the_broker_are_skipped() -> None:
    from confluent_kafka import KafkaError

    eof = Message(topic="t", partition=0, offset=3, error=KafkaError(KafkaError._PARTITION_EOF))
    b = _decode([eof, _msg(0, 4, _event("s1", 4))])
    assert b.consumed == 1 and b.cols.koff == [4]


def test_headers() -> None:
    m = _msg(0, 1, b"x", headers=[("a", b"1"), (ev.H_POISON, b"label"), ("n", None)])
    assert header(m, ev.H_POISON) == "label" and header(m, "n") is None and header(m, "missing") is None
