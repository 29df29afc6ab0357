"""The chunk codec restores every field bit for bit (storage.chunks)."""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorpipe.storage import chunks

_ID_CHARS = "abcXYZ0189._:@/+=-"
_I64 = st.integers(-(2**63), 2**63 - 1)
_EXTREMES = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308]


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(_EXTREMES), st.floats(allow_nan=False, allow_infinity=False), st.floats())


@st.composite
def _days(draw: st.DrawFn) -> chunks.Rows:
    """Random readings of a day: gaps and repeats of times, seq steps back, extreme values."""
    n = draw(st.integers(0, 300))
    uuids = draw(st.booleans())
    if uuids:
        ids = [str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))) for _ in range(n)]
    else:
        ids = [draw(st.text(_ID_CHARS, min_size=1, max_size=64)) for _ in range(n)]
    start = draw(st.integers(0, 4_000_000_000_000_000))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 999, 100_000, 3_600_000_000]), min_size=n, max_size=n))
    seq_steps = draw(st.lists(st.sampled_from([1, 1, 1, 0, -1, 5, -1000]), min_size=n, max_size=n))
    return chunks.Rows(
        event_id=ids,
        ts=np.asarray(start + np.cumsum(steps, dtype=np.int64), dtype=np.int64),
        value=np.asarray(draw(st.lists(_floats(), min_size=n, max_size=n)), dtype=np.float64),
        seq=np.asarray(np.cumsum(seq_steps, dtype=np.int64) + 2**40, dtype=np.int64),
        kpart=np.asarray(draw(st.lists(st.integers(0, 11), min_size=n, max_size=n)), dtype=np.int32),
        koff=np.asarray(draw(st.lists(_I64, min_size=n, max_size=n)), dtype=np.int64),
        ingest_id=np.asarray(draw(st.lists(_I64, min_size=n, max_size=n)), dtype=np.int64),
        ingested=np.asarray(draw(st.lists(_I64, min_size=n, max_size=n)), dtype=np.int64),
    )


def _bits(rows: chunks.Rows) -> dict[str, object]:
    return {
        "event_id": rows.event_id,
        "ts": rows.ts.tolist(),
        "value": rows.value.view(np.uint64).tolist(),  # bit patterns: -0.0 is not 0.0 here
        "seq": rows.seq.tolist(),
        "kpart": rows.kpart.tolist(),
        "koff": rows.koff.tolist(),
        "ingest_id": rows.ingest_id.tolist(),
        "ingested": rows.ingested.tolist(),
    }


@settings(max_examples=200, deadline=None)
@given(_days())
def test_a_chunk_restores_every_field_bit_for_bit(rows: chunks.Rows) -> None:
    assert _bits(chunks.decode(chunks.encode(rows))) == _bits(rows)


def test_nan_payloads_and_infinities_survive() -> None:
    odd = np.frombuffer(struct.pack("<3Q", 0x7FF8000000000123, 0xFFF0000000000001, 0x7FF0000000000000), np.float64)
    rows = chunks.Rows(
        event_id=["a", "b", "c"],
        ts=np.array([1, 1, 1]),
        value=odd.copy(),
        seq=np.array([3, 2, 1]),
        kpart=np.zeros(3, np.int32),
        koff=np.arange(3),
        ingest_id=np.arange(3),
        ingested=np.arange(3),
    )
    assert _bits(chunks.decode(chunks.encode(rows))) == _bits(rows)


def test_upper_case_uuids_are_kept_as_text() -> None:
    ids = [str(uuid.uuid4()).upper(), str(uuid.uuid4())]
    rows = chunks.Rows(
        ids,
        np.array([1, 2]),
        np.array([1.0, 2.0]),
        np.array([1, 2]),
        np.zeros(2, np.int32),
        np.arange(2),
        np.arange(2),
        np.arange(2),
    )
    assert chunks.decode(chunks.encode(rows)).event_id == ids


def test_ordered_sorts_by_time_then_id() -> None:
    rows = chunks.Rows(
        ["b", "a", "c"],
        np.array([5, 5, 1]),
        np.array([1.0, 2.0, 3.0]),
        np.array([1, 2, 3]),
        np.zeros(3, np.int32),
        np.arange(3),
        np.arange(3),
        np.arange(3),
    )
    assert rows.ordered().event_id == ["c", "a", "b"]


def test_a_foreign_or_newer_chunk_is_refused() -> None:
    with pytest.raises(ValueError, match="not a chunk"):
        chunks.decode(b"\x00garbage")
    newer = chunks.encode(chunks.Rows()).replace(b"\xa1v\x01", b"\xa1v\x02")
    with pytest.raises(ValueError, match="version 2"):
        chunks.decode(newer)
