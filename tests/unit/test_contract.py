"""The event contract: what is accepted, and the precise reason for what is not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from sensorpipe.contracts.events import (
    EventDecoder,
    Poison,
    Reason,
    SensorEvent,
    Window,
    bad_ids,
    content_hash,
    encode_event,
)

NOW_MS = 1_790_000_000_000
WINDOW = Window(NOW_MS * 1000, past_s=7 * 86_400, future_s=86_400)


def msg(**kw: object) -> bytes:
    base: dict[str, object] = {"sensor_id": "s-1", "event_id": "e-1", "timestamp": NOW_MS, "value": 1.5, "seq": 3}
    base.update(kw)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def decode(value: bytes, key: bytes | None = b"s-1") -> SensorEvent | Poison:
    return EventDecoder(4096).decode(key, value, WINDOW)


@pytest.mark.parametrize(
    "ts",
    [
        NOW_MS,
        "2026-09-21T14:13:20Z",
        "2026-09-21T14:13:20.123Z",
        "2026-09-21T16:13:20.123456+02:00",
        "2026-09-21 14:13:20Z",
    ],
)
def test_accepted_timestamps(ts: object) -> None:
    out = decode(msg(timestamp=ts))
    assert isinstance(out, SensorEvent), out


def test_iso_and_epoch_agree_on_event_time() -> None:
    iso = datetime.fromtimestamp(NOW_MS / 1000, UTC).isoformat()
    a, b = decode(msg(timestamp=NOW_MS)), decode(msg(timestamp=iso))
    assert isinstance(a, SensorEvent) and isinstance(b, SensorEvent)
    assert a.ts_micros() == b.ts_micros() == NOW_MS * 1000
    assert content_hash(a) == content_hash(b)  # same event, different encoding: a duplicate


def test_content_hash_tells_conflicts() -> None:
    a, b = decode(msg(value=1.5)), decode(msg(value=1.6))
    assert isinstance(a, SensorEvent) and isinstance(b, SensorEvent)
    assert content_hash(a) != content_hash(b)


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b"s-1", Reason.EMPTY),
        (b"{" * 5000, b"s-1", Reason.TOO_LARGE),
        (b'{"sensor_id": "\xff"}', b"s-1", Reason.NOT_UTF8),
        (b'{"sensor_id": ', b"s-1", Reason.MALFORMED_JSON),
        (b'"just a string"', b"s-1", Reason.NOT_AN_OBJECT),
        (msg(seq=...), b"s-1", Reason.MISSING_FIELD),
        (msg(extra=True), b"s-1", Reason.UNKNOWN_FIELD),
        (msg(value="1"), b"s-1", Reason.WRONG_TYPE),
        (msg(value=None), b"s-1", Reason.WRONG_TYPE),
        (msg(value=False), b"s-1", Reason.WRONG_TYPE),
        (msg(seq=1.5), b"s-1", Reason.WRONG_TYPE),
        (msg(sensor_id=7), b"s-1", Reason.WRONG_TYPE),
        (msg().replace(b'"value":1.5', b'"value":NaN'), b"s-1", Reason.NON_FINITE_VALUE),
        (msg().replace(b'"value":1.5', b'"value":-Infinity'), b"s-1", Reason.NON_FINITE_VALUE),
        (msg().replace(b'"value":1.5', b'"value":1e999'), b"s-1", Reason.VALUE_OUT_OF_RANGE),
        (msg(value=2e15), b"s-1", Reason.VALUE_OUT_OF_RANGE),
        (msg(seq=-1), b"s-1", Reason.NEGATIVE_SEQ),
        (msg(seq=2**63), b"s-1", Reason.SEQ_OUT_OF_RANGE),
        (msg(), b"s-2", Reason.KEY_MISMATCH),
        (msg(), None, Reason.KEY_MISMATCH),
        (msg(sensor_id="", event_id="e"), b"", Reason.BAD_ID),
        (msg(event_id="x" * 65), b"s-1", Reason.BAD_ID),
        (msg(event_id='a"b'), b"s-1", Reason.BAD_ID),
        (msg(event_id="a\\b"), b"s-1", Reason.BAD_ID),
        (msg(event_id="ab\n"), b"s-1", Reason.BAD_ID),
        (msg(timestamp="2026-09-21T14:13:20"), b"s-1", Reason.TIMESTAMP_NO_ZONE),
        (msg(timestamp="last tuesday"), b"s-1", Reason.TIMESTAMP_INVALID),
        (msg(timestamp=-5), b"s-1", Reason.TIMESTAMP_INVALID),
        (msg(timestamp=True), b"s-1", Reason.WRONG_TYPE),
        (msg(timestamp=NOW_MS + 2 * 86_400_000), b"s-1", Reason.TIMESTAMP_OUT_OF_WINDOW),
        (msg(timestamp=NOW_MS - 8 * 86_400_000), b"s-1", Reason.TIMESTAMP_OUT_OF_WINDOW),
    ],
)
def test_poison_reasons(value: bytes, key: bytes | None, reason: Reason) -> None:
    out = decode(value, key)
    assert isinstance(out, Poison), out
    assert out.reason is reason, out.detail
    assert out.detail
    # the fast path refuses it too: at once, or when the batch's ids are checked
    row = EventDecoder(4096).row_decoder(WINDOW)(key, value)
    assert row is None or bad_ids([row[0]]) or bad_ids([row[1]]), row


def test_bad_ids_checks_a_batch_at_once() -> None:
    good = ["sensor-00042", str(uuid.uuid4()), "a.b:c@d/e+f=g_h-0"]
    assert bad_ids(good) == []
    assert bad_ids([]) == []
    for bad in ['a"b', "a\\b", "ab\n", "a\nb", "\n", "é", "a b", "a\tb", "a'b", "a;b"]:
        ids = [*good, bad, *good]
        assert bad_ids(ids) == [3], bad


@pytest.mark.parametrize(
    "ts",
    [
        NOW_MS,
        "2026-09-21T14:13:20.123Z",
        "2026-09-21T16:13:20.123456+02:00",
        "2026-09-21T09:13:20.5-05:00",
        NOW_MS - 7 * 86_400_000,  # the window's edges are inside it
        NOW_MS + 86_400_000,
    ],
)
@pytest.mark.parametrize("value", [1.5, -3, 0.1 + 0.2, 1e15, -1e15])
def test_fast_row_path_agrees_with_the_contract(ts: object, value: float) -> None:
    raw = msg(timestamp=ts, value=value, event_id=str(uuid.uuid4()), seq=2**62)
    dec = EventDecoder(4096)
    full = dec.decode_timed(b"s-1", raw, WINDOW)
    assert isinstance(full, tuple), full
    e, ts_us = full
    fast = dec.row_decoder(WINDOW)
    row = fast(b"s-1", raw)
    assert row == (e.event_id, e.sensor_id, ts_us, e.value, e.seq, content_hash(e, ts_us))
    assert fast(b"s-1", raw) == row  # the second time the timestamp text comes from the cache


def test_fast_row_path_caches_only_valid_timestamp_texts() -> None:
    fast = EventDecoder(4096).row_decoder(WINDOW)
    for _ in range(2):  # a refused text is refused again, never cached as valid
        assert fast(b"s-1", msg(timestamp="2026-09-21T14:13:20")) is None
        assert fast(b"s-1", msg(timestamp="2026-13-21T14:13:20Z")) is None
    ok = fast(b"s-1", msg(timestamp="2026-09-21T14:13:20Z"))
    assert ok is not None and ok[2] == 1_790_000_000_000_000


def test_producer_encoding_round_trips() -> None:
    eid = str(uuid.uuid4())
    raw = encode_event("sensor-00042", eid, NOW_MS + 7, 21.25, 9)
    assert b'"timestamp":"' in raw and raw.count(b"Z") == 1
    out = EventDecoder(4096).decode(b"sensor-00042", raw, WINDOW)
    assert isinstance(out, SensorEvent)
    assert (out.sensor_id, out.event_id, out.value, out.seq, out.ts_micros()) == (
        "sensor-00042",
        eid,
        21.25,
        9,
        (NOW_MS + 7) * 1000,
    )
