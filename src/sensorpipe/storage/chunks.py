"""The compressed column form of compacted days (docs/decisions/011-compacted-days.md).

A chunk holds the stored readings of one sensor in one UTC hour (or, for rows that arrived
after their day was compacted, a later part of that hour), ordered by (ts, event_id). Every
field restores bit for bit: `encode` then `decode` gives back exactly the columns it was
given, ids and microsecond times included, and every float64 bit pattern (-0.0, subnormals,
the largest magnitudes).

Encodings, all from established codecs:
- numbers (times, values, seq, Kafka positions, ingest ids) with pcodec, which finds the
  deltas, common multiples and float quantisation of each column by itself;
- event ids that are all canonical lower-case UUIDs (what our producer sends) as their 128
  bits, split into two 64-bit columns for pcodec: the high half carries UUIDv7's time;
- any other ids as newline-separated text under zstd (the id contract excludes newlines).

The chunk itself is a msgpack map of those byte strings, versioned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec
import numpy as np
import zstandard
from pcodec import ChunkConfig
from pcodec import standalone as pco

VERSION = 1
_UUIDS = re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})*")
# Level 4 of 12: as small as the default on these columns, in half the time (decision 011).
_CONFIG = ChunkConfig(compression_level=4)


class _Blob(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    v: int
    n: int
    ts: bytes
    value: bytes
    seq: bytes
    kpart: bytes
    koff: bytes
    ingest_id: bytes
    ingested: bytes
    uuid_hi: bytes | None = None
    uuid_lo: bytes | None = None
    ids: bytes | None = None  # zstd of the ids joined by newlines, when they are not all UUIDs


@dataclass
class Rows:
    """A chunk's readings, column-wise; times are microseconds since the epoch (UTC)."""

    event_id: list[str] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kpart: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    koff: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ingest_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ingested: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.event_id)

    def take(self, index: np.ndarray) -> Rows:
        ids = self.event_id
        return Rows(
            [ids[i] for i in index.tolist()],
            self.ts[index],
            self.value[index],
            self.seq[index],
            self.kpart[index],
            self.koff[index],
            self.ingest_id[index],
            self.ingested[index],
        )

    def ordered(self) -> Rows:
        """The rows in (ts, event_id) order, the order a chunk keeps and readers page by; ids
        compare by code point (PostgreSQL's C collation)."""
        ts = self.ts
        if len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1])):  # strictly rising times: in order already
            return self
        return self.take(np.lexsort((np.array(self.event_id), ts)))


def pack(a: np.ndarray, dtype: type) -> bytes:
    arr: np.ndarray = np.ascontiguousarray(a, dtype=dtype)
    return pco.simple_compress(arr, _CONFIG) if len(arr) else b""


def unpack(b: bytes, dtype: type) -> np.ndarray:
    return pco.simple_decompress(b) if b else np.zeros(0, dtype)


def encode(rows: Rows) -> bytes:
    """The chunk of `rows`, in the order given."""
    joined = "".join(rows.event_id)
    uuid_hi = uuid_lo = ids = None
    if len(joined) == 36 * len(rows) and _UUIDS.fullmatch(joined):
        halves = np.frombuffer(bytes.fromhex(joined.replace("-", "")), dtype=">u8").reshape(-1, 2)
        uuid_hi, uuid_lo = pack(halves[:, 0], np.uint64), pack(halves[:, 1], np.uint64)
    else:
        ids = zstandard.ZstdCompressor(level=3).compress("\n".join(rows.event_id).encode())
    blob = _Blob(
        v=VERSION,
        n=len(rows),
        ts=pack(rows.ts, np.int64),
        value=pack(rows.value, np.float64),  # pcodec keeps every bit pattern of a float
        seq=pack(rows.seq, np.int64),
        kpart=pack(rows.kpart, np.int32),
        koff=pack(rows.koff, np.int64),
        ingest_id=pack(rows.ingest_id, np.int64),
        ingested=pack(rows.ingested, np.int64),
        uuid_hi=uuid_hi,
        uuid_lo=uuid_lo,
        ids=ids,
    )
    return msgspec.msgpack.encode(blob)


def decode(data: bytes) -> Rows:
    """The rows of a chunk, as `encode` was given them. Raises ValueError on a chunk this
    version cannot read."""
    return Chunk(data).rows()


class Chunk:
    """A chunk opened for reading: its number columns decoded, its ids formatted on demand
    (a reader that needs a page of a chunk formats only that page's ids)."""

    def __init__(self, data: bytes) -> None:
        try:
            blob = msgspec.msgpack.decode(data, type=_Blob)
        except msgspec.DecodeError as e:
            raise ValueError(f"not a chunk: {e}") from e
        if blob.v != VERSION:
            raise ValueError(f"chunk version {blob.v}, this code reads {VERSION}")
        self._blob = blob
        self.ts = unpack(blob.ts, np.int64)
        self.value = unpack(blob.value, np.float64)
        self.seq = unpack(blob.seq, np.int64)
        self.kpart = unpack(blob.kpart, np.int32)
        self.koff = unpack(blob.koff, np.int64)
        self.ingested = unpack(blob.ingested, np.int64)
        self._texts: list[str] | None = None
        self._halves: np.ndarray | None = None

    def __len__(self) -> int:
        return self._blob.n

    def ids(self, index: np.ndarray | None = None) -> list[str]:
        """The event ids of the rows at `index` (default: all), in that order."""
        blob = self._blob
        if blob.n == 0:
            return []
        if blob.ids is not None:
            if self._texts is None:
                self._texts = zstandard.ZstdDecompressor().decompress(blob.ids).decode().split("\n")
            texts = self._texts
            return texts if index is None else [texts[i] for i in index.tolist()]
        if self._halves is None:
            self._halves = np.stack(
                [unpack(blob.uuid_hi or b"", np.uint64), unpack(blob.uuid_lo or b"", np.uint64)], axis=1
            )
        halves = self._halves if index is None else self._halves[index]
        h = halves.astype(">u8").tobytes().hex()
        return [
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
            for i in range(0, len(h), 32)
        ]

    def rows(self) -> Rows:
        blob = self._blob
        return Rows(
            event_id=self.ids(),
            ts=self.ts,
            value=self.value,
            seq=self.seq,
            kpart=self.kpart,
            koff=self.koff,
            ingest_id=unpack(blob.ingest_id, np.int64),
            ingested=self.ingested,
        )
