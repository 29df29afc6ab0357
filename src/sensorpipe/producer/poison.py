"""Deliberately malformed messages, one builder per poison kind of the contract.

Each message is labelled with the `sensorpipe.poison` header naming the reason the
consumer is expected to give, so tests and the audit can count them exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson

from sensorpipe.contracts.events import Reason, iso_millis

Builder = Callable[[str, str, int], tuple[bytes | None, bytes]]


def _obj(sid: str, eid: str, ts_ms: int, **kw: object) -> bytes:
    """A valid event but for the fields in `kw` (`...` removes one). Its timestamp is the ISO
    text the producer writes, so the defect is the only thing wrong with it."""
    base: dict[str, object] = {
        "sensor_id": sid,
        "event_id": eid,
        "timestamp": iso_millis(ts_ms),
        "value": 1.0,
        "seq": 0,
    }
    base.update(kw)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


BUILDERS: dict[Reason, Builder] = {
    Reason.MALFORMED_JSON: lambda s, e, t: (s.encode(), b'{"sensor_id": "' + s.encode() + b'", "value": '),
    Reason.NOT_UTF8: lambda s, e, t: (s.encode(), b'{"sensor_id": "\xc3\x28"}'),
    Reason.NOT_AN_OBJECT: lambda s, e, t: (s.encode(), b"[1, 2, 3]"),
    Reason.MISSING_FIELD: lambda s, e, t: (s.encode(), _obj(s, e, t, value=...)),
    Reason.UNKNOWN_FIELD: lambda s, e, t: (s.encode(), _obj(s, e, t, unit="C")),
    Reason.WRONG_TYPE: lambda s, e, t: (s.encode(), _obj(s, e, t, value="21.5")),
    Reason.NON_FINITE_VALUE: lambda s, e, t: (s.encode(), _obj(s, e, t).replace(b'"value":1.0', b'"value":NaN')),
    Reason.VALUE_OUT_OF_RANGE: lambda s, e, t: (s.encode(), _obj(s, e, t, value=1e300)),
    Reason.NEGATIVE_SEQ: lambda s, e, t: (s.encode(), _obj(s, e, t, seq=-5)),
    Reason.KEY_MISMATCH: lambda s, e, t: (b"not-" + s.encode(), _obj(s, e, t)),
    Reason.TIMESTAMP_NO_ZONE: lambda s, e, t: (s.encode(), _obj(s, e, t, timestamp="2026-01-01T00:00:00")),
    Reason.TIMESTAMP_INVALID: lambda s, e, t: (s.encode(), _obj(s, e, t, timestamp="soon")),
    Reason.TIMESTAMP_OUT_OF_WINDOW: lambda s, e, t: (
        s.encode(),
        _obj(s, e, t, timestamp=iso_millis(t + 30 * 86_400_000)),
    ),
}


def poison(rng: random.Random, sid: str, eid: str, ts_ms: int) -> tuple[Reason, bytes | None, bytes]:
    reason = rng.choice(list(BUILDERS))
    key, value = BUILDERS[reason](sid, eid, ts_ms)
    return reason, key, value
