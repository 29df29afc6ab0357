"""`sensorpipe dlq`: parsing its flags, rendering payloads, and judging dead letters again
(the dead-letter topic is a fake `read` function; the decoder and window are the real ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensorpipe.contracts import events as ev
from sensorpipe.dlq.main import parse_position, parse_since
from sensorpipe.dlq.payload import Original, PayloadError, render
from sensorpipe.dlq.redrive import DLQ_HEADERS, H_REDRIVEN_FROM, Redrive, _headers
from sensorpipe.storage.deadletters import StoredDeadLetter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp() * 1_000_000)


def test_since_takes_a_span_ago_or_a_time() -> None:
    assert parse_since("15m", NOW) == NOW - timedelta(minutes=15)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-30T10:00:00Z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert parse_since("2026-11-30T10:00:00") == datetime(2026, 11, 30, 10, tzinfo=UTC)  # naive: UTC
    for bad in ("yesterday", "15", "-2h", "2w", ""):
        with pytest.raises(ValueError, match="span ago"):
            parse_since(bad, NOW)


def test_positions_are_partition_at_offset() -> None:
    assert parse_position("3@1200") == (3, 1200)
    assert parse_position("3:1200") == (3, 1200)
    for bad in ("3", "a@1", "3@-1", "3@1@2"):
        with pytest.raises(ValueError, match="PARTITION@OFFSET"):
            parse_position(bad)


def test_render_escapes_text_and_dumps_other_bytes_as_hex() -> None:
    assert render(None) == "(null)"
    assert render('{"v":"é\n\x1b"}'.encode()) == '{"v":"\\xe9\\n\\x1b"}'
    dump = render(bytes(range(250, 256)) + b"AB")
    assert dump == f"00000000  {'fa fb fc fd fe ff 41 42':<48} ......AB"  # offset, hex, printable
    assert len(render(bytes([0xFF]) * 40).splitlines()) == 3  # 16 bytes a line


def _dead(**kw: object) -> StoredDeadLetter:
    base: dict[str, object] = {
        "kafka_partition": 2,
        "kafka_offset": 40,
        "reason": "timestamp_out_of_window",
        "detail": "ahead",
        "poison_label": None,
        "dead_at": NOW,
        "dlq_partition": 2,
        "dlq_offset": 7,
        "redriven_at": None,
        "redriven_event_id": None,
    }
    return StoredDeadLetter(**{**base, **kw})  # type: ignore[arg-type]


def _event(ts: datetime) -> bytes:
    return ev.encode_event("s-1", "e-1", int(ts.timestamp() * 1000), 1.5, 3)


def _redrive(messages: dict[tuple[int, int], Original], future_s: int = 86_400) -> Redrive:
    def read(partition: int, offset: int) -> Original:
        if (partition, offset) not in messages:
            raise PayloadError("no message there")
        return messages[(partition, offset)]

    return Redrive(read, ev.EventDecoder(65_536), lambda: ev.Window(NOW_US, 7 * 86_400, future_s))


def test_an_event_within_the_window_now_passes_and_goes_back_without_the_dlq_headers() -> None:
    headers: list[tuple[str, bytes | None]] = [(ev.H_POISON, b"timestamp_out_of_window"), (ev.H_REASON, b"x")]
    original = Original(b"s-1", _event(NOW + timedelta(minutes=10)), headers)
    out = _redrive({(2, 7): original}).judge(_dead())
    assert (out.verdict, out.event_id) == ("passes", "e-1")
    sent = dict(_headers(out))
    assert sent[H_REDRIVEN_FROM] == b"2@40"
    assert ev.H_POISON in sent and not DLQ_HEADERS & sent.keys()


def test_what_still_fails_the_contract_stays_a_dead_letter() -> None:
    too_far = Original(b"s-1", _event(NOW + timedelta(minutes=10)), [])
    out = _redrive({(2, 7): too_far}, future_s=60).judge(_dead())
    assert out.verdict == "still poison" and out.detail.startswith("timestamp_out_of_window")
    broken = Original(b"s-1", b"{not json", [])
    assert _redrive({(2, 7): broken}).judge(_dead()).verdict == "still poison"


def test_a_dead_letter_without_its_copy_or_already_redriven_is_not_sent() -> None:
    r = _redrive({})
    assert r.judge(_dead()).verdict == "no payload"  # gone from the topic
    assert r.judge(_dead(dlq_partition=None, dlq_offset=None)).verdict == "no payload"
    done = r.judge(_dead(redriven_at=NOW, redriven_event_id="e-1"))
    assert (done.verdict, done.event_id) == ("already redriven", "e-1")
