r"""The event contract of topic `sensor_metrics`, and its validation.

Key: `sensor_id` as UTF-8. Value: a JSON object with exactly these fields:

- `sensor_id`: string of 1-64 letters, digits or `._:@/+=-`, equal to the key;
- `event_id`: string, same rules, globally unique (UUIDv7 from our producer);
- `timestamp`: either an RFC 3339 / ISO 8601 date-time string *with* a zone (`Z` or `±HH:MM`;
  `T` or a space between date and time; fractional seconds allowed, kept to microseconds), or
  an integer number of milliseconds since the Unix epoch. It must lie within the accepted
  window: not more than `future_s` ahead of the consumer's clock, and not older than
  `past_s` (the retention);
- `value`: a finite JSON number with |value| <= 1e15 (booleans are not numbers);
- `seq`: an integer, 0 <= seq < 2**63, increasing by one per event of a sensor.

Anything else is poison, with one of the `Reason` codes below. Decoding is two-tier: the
fast path is a compiled msgspec decoder; only a message it rejects is examined again, more
slowly, to name the precise reason.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import orjson
import xxhash

MAX_ID_LEN = 64
VALUE_LIMIT = 1e15
SEQ_LIMIT = 2**63 - 1
FIELDS = ("sensor_id", "event_id", "timestamp", "value", "seq")

# DLQ headers: the original key and bytes are kept as they came; these explain why.
H_REASON = "sensorpipe.reason"
H_DETAIL = "sensorpipe.detail"
H_SOURCE_TOPIC = "sensorpipe.source.topic"
H_SOURCE_PARTITION = "sensorpipe.source.partition"
H_SOURCE_OFFSET = "sensorpipe.source.offset"
# Set by the producer's poison injector so tests and the audit can count deliberate poison.
H_POISON = "sensorpipe.poison"

# Ids are letters, digits and `._:@/+=-`: enough for names and UUIDs, and nothing that could
# break the quoted array literals the store sends to PostgreSQL, or look like SQL or markup.
ID_PATTERN = r"^[A-Za-z0-9._:@/+=-]+\Z"
# The same rule for JSON Schema / pydantic (Rust regex), where `$` already means end of text.
ID_PATTERN_PORTABLE = r"^[A-Za-z0-9._:@/+=-]+$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN, pattern=ID_PATTERN)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=SEQ_LIMIT)]
ZonedDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
EpochMillis = Annotated[int, msgspec.Meta(ge=0, le=32503680000000)]  # up to year 3000


class SensorEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sensor_id: Id
    event_id: Id
    timestamp: ZonedDateTime | EpochMillis
    value: float
    seq: Seq

    def ts_micros(self) -> int:
        """Event time as microseconds since the epoch (UTC)."""
        ts = self.timestamp
        if isinstance(ts, int):
            return ts * 1000
        delta = ts - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _UncheckedIds(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """SensorEvent without the per-string id pattern (three quarters of its decoding time):
    the fast path checks the ids of a whole batch at once with `bad_ids` instead."""

    sensor_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
    timestamp: str | EpochMillis  # a string is parsed by msgspec's ZonedDateTime, once per text
    value: float
    seq: Seq


# Many ids, joined by newlines, checked by one match: the id characters or the separator.
_IDS_RE = re.compile(r"[A-Za-z0-9._:@/+=\n-]*")


def bad_ids(ids: list[str]) -> list[int]:
    """The positions of ids that break the id rule (`ID_PATTERN`); normally none, found in one
    regex pass over the batch. An id holding the separator itself shows as a separator too
    many, so the slow per-id check runs whenever the count is off."""
    joined = "\n".join(ids)
    if _IDS_RE.fullmatch(joined) and joined.count("\n") == max(len(ids) - 1, 0):
        return []
    return [i for i, x in enumerate(ids) if not _ID_RE.match(x)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A valid event as the store's row: event_id, sensor_id, ts_us, value, seq, content_hash.
Row = tuple[str, str, int, float, int, int]
_PACK = msgspec.msgpack.Encoder().encode  # a compact, canonical byte form of a tuple
_SIGN = 1 << 63  # (h ^ _SIGN) - _SIGN reads an unsigned 64-bit h as a signed one
_ID_RE = re.compile(ID_PATTERN)


class Reason(enum.StrEnum):
    """Why a message was dead-lettered."""

    TOO_LARGE = "too_large"
    EMPTY = "empty"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE_VALUE = "non_finite_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    NEGATIVE_SEQ = "negative_seq"
    SEQ_OUT_OF_RANGE = "seq_out_of_range"
    BAD_ID = "bad_id"
    KEY_MISMATCH = "key_mismatch"
    TIMESTAMP_NO_ZONE = "timestamp_no_zone"
    TIMESTAMP_INVALID = "timestamp_invalid"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"


@dataclass(frozen=True, slots=True)
class Poison:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Window:
    """The accepted event-time window, relative to `now_us`."""

    now_us: int
    past_s: int
    future_s: int

    def contains(self, ts_us: int) -> bool:
        return self.now_us - self.past_s * 1_000_000 <= ts_us <= self.now_us + self.future_s * 1_000_000


class EventDecoder:
    """Decodes and validates one message against the contract. Build one per consumer."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._decoder = msgspec.json.Decoder(SensorEvent)
        self._fast = msgspec.json.Decoder(_UncheckedIds)
        self._zoned = msgspec.json.Decoder(ZonedDateTime)
        # Timestamp text -> epoch microseconds. A producer stamps milliseconds, so dozens of
        # events share one text; parsing it once saves a datetime and two timedeltas each.
        self._ts_us: dict[str, int] = {}

    def decode(self, key: bytes | None, value: bytes | None, window: Window) -> SensorEvent | Poison:
        out = self.decode_timed(key, value, window)
        return out[0] if isinstance(out, tuple) else out

    def row_decoder(self, window: Window) -> Callable[[bytes | None, bytes | None], Row | None]:
        """The consumer's hot path, for one batch: a function that returns a valid message as
        the row the store writes, `(event_id, sensor_id, ts_us, value, seq, content_hash)`,
        and None for anything else (`decode_timed` then names the reason).

        It applies the checks of `decode_timed` and the hash of `content_hash` (a unit test
        holds them equal), flattened into one call, except the id pattern: the caller must
        run `bad_ids` over the batch's sensor and event ids before using any row.
        """
        decode = self._fast.decode
        max_bytes = self.max_bytes
        lo = window.now_us - window.past_s * 1_000_000
        hi = window.now_us + window.future_s * 1_000_000
        pack, digest = _PACK, xxhash.xxh3_64_intdigest
        epoch, micro = _EPOCH, timedelta(microseconds=1)
        errors = (msgspec.DecodeError, UnicodeDecodeError)
        zoned, known, dumps = self._zoned.decode, self._ts_us, orjson.dumps

        def row(key: bytes | None, value: bytes | None) -> Row | None:
            if not value or len(value) > max_bytes:
                return None
            try:
                e = decode(value)
            except errors:
                return None
            v, t, sid = e.value, e.timestamp, e.sensor_id
            if type(t) is int:
                ts = t * 1000
            else:
                got = known.get(t)  # type: ignore[arg-type]
                if got is None:
                    try:  # the same parser, and so the same rules, as SensorEvent's field
                        got = (zoned(dumps(t)) - epoch) // micro
                    except errors:
                        return None
                    if len(known) >= 100_000:
                        known.clear()
                    known[t] = got  # type: ignore[index]
                ts = got
            if not (-VALUE_LIMIT <= v <= VALUE_LIMIT and lo <= ts <= hi) or key != sid.encode():
                return None
            eid, seq = e.event_id, e.seq
            h = (digest(pack((sid, eid, ts, v, seq))) ^ _SIGN) - _SIGN
            return eid, sid, ts, v, seq, h

        return row

    def decode_timed(self, key: bytes | None, value: bytes | None, window: Window) -> tuple[SensorEvent, int] | Poison:
        """The event and its time in epoch microseconds (computed once), or the poison reason."""
        if not value:
            return Poison(Reason.EMPTY, "empty message value")
        if len(value) > self.max_bytes:
            return Poison(Reason.TOO_LARGE, f"{len(value)} bytes > limit {self.max_bytes}")
        try:
            ev = self._decoder.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return diagnose(key, value)
        v = ev.value
        if not -VALUE_LIMIT <= v <= VALUE_LIMIT:  # also false for NaN and the infinities
            if not math.isfinite(v):
                return Poison(Reason.NON_FINITE_VALUE, f"value {v!r} is not finite")
            return Poison(Reason.VALUE_OUT_OF_RANGE, f"|value| > {VALUE_LIMIT:g}")
        if key is None or key != ev.sensor_id.encode():
            return Poison(Reason.KEY_MISMATCH, f"key {key!r} != sensor_id {ev.sensor_id!r}")
        ts = ev.ts_micros()
        if not window.contains(ts):
            return Poison(Reason.TIMESTAMP_OUT_OF_WINDOW, f"timestamp {ev.timestamp} is outside the accepted window")
        return ev, ts


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def diagnose(key: bytes | None, value: bytes) -> Poison:
    """The slow path: name precisely why `value` failed the fast decoder. The checks run in
    the order a reader would fix them: encoding, JSON, shape, then each field."""
    parsed = _parse(value)
    if isinstance(parsed, Poison):
        return parsed
    obj, text, literals = parsed
    return (
        _shape(obj)
        or _ids(obj)
        or _value(obj["value"], text, literals)
        or _seq(obj["seq"])
        or _timestamp(obj["timestamp"])
    )


def _parse(value: bytes) -> tuple[dict[str, Any], str, bool] | Poison:
    """The JSON object, its text, and whether only the stdlib parser took it (NaN/Infinity
    literals and overflowing numbers, which orjson refuses)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as e:
        return Poison(Reason.NOT_UTF8, f"invalid UTF-8 at byte {e.start}")
    literals = False
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        try:
            obj = json.loads(text)
        except ValueError:
            return Poison(Reason.MALFORMED_JSON, str(e)[:200])
        literals = True
    if not isinstance(obj, dict):
        return Poison(Reason.NOT_AN_OBJECT, f"top-level JSON is {_type_name(obj)}")
    return obj, text, literals


def _shape(obj: dict[str, Any]) -> Poison | None:
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        return Poison(Reason.UNKNOWN_FIELD, f"unknown field(s): {', '.join(unknown)[:200]}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        return Poison(Reason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
    return None


def _ids(obj: dict[str, Any]) -> Poison | None:
    for f in ("sensor_id", "event_id"):
        if not isinstance(obj[f], str):
            return Poison(Reason.WRONG_TYPE, f"{f} must be a string, got {_type_name(obj[f])}")
        if not 1 <= len(obj[f]) <= MAX_ID_LEN or not _ID_RE.match(obj[f]):
            return Poison(Reason.BAD_ID, f"{f} must be 1-{MAX_ID_LEN} letters, digits or ._:@/+=-")
    return None


def _value(v: Any, text: str, literals: bool) -> Poison | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return Poison(Reason.WRONG_TYPE, f"value must be a number, got {_type_name(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v) or (literals and "Infinity" in text):
            return Poison(Reason.NON_FINITE_VALUE, f"value is {v!r}")
        return Poison(Reason.VALUE_OUT_OF_RANGE, "value overflows a double")
    if abs(v) > VALUE_LIMIT:
        return Poison(Reason.VALUE_OUT_OF_RANGE, f"|value| > {VALUE_LIMIT:g}")
    return None


def _seq(s: Any) -> Poison | None:
    if isinstance(s, bool) or not isinstance(s, int):
        return Poison(Reason.WRONG_TYPE, f"seq must be an integer, got {_type_name(s)}")
    if s < 0:
        return Poison(Reason.NEGATIVE_SEQ, f"seq {s} < 0")
    if s > SEQ_LIMIT:
        return Poison(Reason.SEQ_OUT_OF_RANGE, f"seq {s} >= 2**63")
    return None


def _timestamp(ts: Any) -> Poison:
    """Why a timestamp failed: reached only when every other field passed."""
    if isinstance(ts, bool) or not isinstance(ts, str | int):
        return Poison(Reason.WRONG_TYPE, f"timestamp must be a string or integer, got {_type_name(ts)}")
    if isinstance(ts, int):
        return Poison(Reason.TIMESTAMP_INVALID, f"epoch milliseconds {ts} out of range")
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return Poison(Reason.TIMESTAMP_INVALID, f"not an ISO 8601 date-time: {ts[:64]!r}")
    if parsed.tzinfo is None:
        return Poison(Reason.TIMESTAMP_NO_ZONE, f"timestamp {ts[:64]!r} has no zone")
    return Poison(Reason.TIMESTAMP_INVALID, f"timestamp {ts[:64]!r} is not RFC 3339")


def content_hash(ev: SensorEvent, ts_us: int | None = None) -> int:
    """A signed 64-bit hash of the event's canonical content (event time normalised to
    microseconds), so the same event re-encoded differently still counts as a duplicate
    and a different event under a reused id counts as a conflict.

    The hash is XXH3-64 of the content packed with msgpack, read as a signed int64 (what
    `processed_events.content_hash` holds). It is not cryptographic: it tells an honest
    re-send from different content, and a deliberate collision would only hide a conflict.
    Stored hashes must come from this same function: a redelivery of an event stored under
    another hash function would count as a conflict, so changing it needs the dedupe window
    (the retention) drained first. XXH3 replaced blake2b (8-byte digest) before any release:
    1.4 us less per event on the consumer's hot path."""
    return row_hash(ev.sensor_id, ev.event_id, ev.ts_micros() if ts_us is None else ts_us, ev.value, ev.seq)


def row_hash(sensor_id: str, event_id: str, ts_us: int, value: float, seq: int) -> int:
    """`content_hash` of a stored reading's fields (a compacted one is checked by it)."""
    return (xxhash.xxh3_64_intdigest(_PACK((sensor_id, event_id, ts_us, value, seq))) ^ _SIGN) - _SIGN


def iso_millis(ts_ms: int) -> str:
    """Epoch milliseconds as the contract prefers a timestamp: ISO 8601 UTC with milliseconds and Z."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_event(sensor_id: str, event_id: str, ts_ms: int, value: float, seq: int) -> bytes:
    """The producer's encoding, with the timestamp as `iso_millis` writes it."""
    ts = iso_millis(ts_ms)
    return orjson.dumps({"sensor_id": sensor_id, "event_id": event_id, "timestamp": ts, "value": value, "seq": seq})
