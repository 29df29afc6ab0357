"""PostgreSQL arrays in binary form, for the batch statements' parameters: numbers packed by
numpy in one pass, and text arrays as literals."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds


class BinaryArray:
    """A one-dimensional array of numbers in PostgreSQL's binary format (what `array_recv`
    reads), built by numpy in one pass: a header (one dimension, no NULLs, the element type,
    the length, lower bound 1), then each element as its byte length and big-endian value.
    From a list, numpy raises OverflowError for an int outside the element type; it never
    truncates. A numpy array is cast to the element type as is (the caller's dtype)."""

    __slots__ = ("data",)
    ELEM_OID: ClassVar[int]
    ARRAY_OID: ClassVar[int]
    DTYPE: ClassVar[str]

    def __init__(self, values: list[Any] | np.ndarray) -> None:
        n = len(values)
        if n == 0:
            self.data = struct.pack(">iiI", 0, 0, self.ELEM_OID)
            return
        body = np.empty(n, dtype=[("len", ">i4"), ("v", self.DTYPE)])
        body["len"] = np.dtype(self.DTYPE).itemsize
        body["v"] = values
        self.data = struct.pack(">iiIii", 1, 0, self.ELEM_OID, n, 1) + body.tobytes()

    @staticmethod
    def adapt(conn: psycopg.Connection[Any]) -> None:
        """Teach `conn` to send these arrays as they are, typed by their array oid."""
        for cls in (Int4Array, Int8Array, TimestamptzArray, Float8Array):
            conn.adapters.register_dumper(cls, _BinaryArrayDumper)


class Int4Array(BinaryArray):
    ELEM_OID, ARRAY_OID, DTYPE = 23, 1007, ">i4"


class Int8Array(BinaryArray):
    ELEM_OID, ARRAY_OID, DTYPE = 20, 1016, ">i8"


class TimestamptzArray(BinaryArray):
    """Times given as microseconds since the Unix epoch; sent as PostgreSQL's own (microseconds
    since 2000-01-01 UTC), so the server does no arithmetic to store them."""

    ELEM_OID, ARRAY_OID, DTYPE = 1184, 1185, ">i8"

    def __init__(self, unix_us: list[int] | np.ndarray) -> None:
        super().__init__(np.asarray(unix_us, dtype=np.int64) - PG_EPOCH_US)


class Float8Array(BinaryArray):
    ELEM_OID, ARRAY_OID, DTYPE = 701, 1022, ">f8"  # exact: the doubles' own bytes


class _BinaryArrayDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.ARRAY_OID  # type: ignore[attr-defined]  # registered for BinaryArray's subclasses only

    def dump(self, obj: Any) -> bytes:
        return obj.data  # type: ignore[no-any-return]


def texts(values: list[str]) -> str:
    return '{"' + '","'.join(values) + '"}' if values else "{}"
