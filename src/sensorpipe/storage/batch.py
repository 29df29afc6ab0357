"""A batch as the writer takes it: valid events column-wise, dead letters, and what a write
did; and the statement parameters built from it (`Literals` for its rows, `Others` for the
copies that were not new), whose names the writer's SQL uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter

from sensorpipe.storage.arrays import BinaryArray, Float8Array, Int4Array, Int8Array, TimestamptzArray, texts


@dataclass
class Columns:
    """A batch of valid events, column-wise, in Kafka order."""

    event_id: list[str] = field(default_factory=list)
    sensor_id: list[str] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    kpart: list[int] = field(default_factory=list)
    koff: list[int] = field(default_factory=list)
    chash: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_id)

    def take(self, idx: list[int]) -> Columns:
        """The rows at `idx`, in that order."""
        out = Columns()
        if not idx:
            return out
        pick = itemgetter(*idx)  # one C call per column instead of a Python loop
        for name in ("event_id", "sensor_id", "ts_us", "value", "seq", "kpart", "koff", "chash"):
            got = pick(getattr(self, name))
            setattr(out, name, list(got) if len(idx) > 1 else [got])
        return out

    def owners(self, n: int, also: Iterable[int] = ()) -> dict[int, int]:
        """Each Kafka partition's part when the rows are split into at most `n` parts, never
        an empty one. Partitions go to the lightest part, largest first (balanced by rows);
        partitions in `also` that have no rows (a batch's dead letters, known positions) go to
        the lightest part after that."""
        counts = Counter(self.kpart)
        loads = [0] * max(1, min(n, len(counts)))
        owner: dict[int, int] = {}
        for p, k in sorted(counts.items(), key=lambda pk: (-pk[1], pk[0])):
            i = loads.index(min(loads))  # the first parts each get a partition: none stays empty
            owner[p] = i
            loads[i] += k
        for p in sorted(set(also) - owner.keys()):
            owner[p] = loads.index(min(loads))
        return owner

    def shards(self, n: int, owner: dict[int, int] | None = None) -> list[Columns]:
        """The rows split into parts by Kafka partition (`owner`, by default `owners(n)`): a
        partition's rows stay in one part, in their order, so a sensor's events stay in one
        transaction and in order."""
        owner = self.owners(n) if owner is None else owner
        k = max(owner.values(), default=0) + 1
        if k <= 1:
            return [self]
        idx: list[list[int]] = [[] for _ in range(k)]
        for i, p in enumerate(self.kpart):
            idx[owner[p]].append(i)
        return [self.take(ix) for ix in idx]

    def append(
        self, event_id: str, sensor_id: str, ts_us: int, value: float, seq: int, kpart: int, koff: int, chash: int
    ) -> None:
        self.event_id.append(event_id)
        self.sensor_id.append(sensor_id)
        self.ts_us.append(ts_us)
        self.value.append(value)
        self.seq.append(seq)
        self.kpart.append(kpart)
        self.koff.append(koff)
        self.chash.append(chash)


@dataclass(frozen=True)
class DeadLetter:
    kafka_partition: int
    kafka_offset: int
    reason: str
    detail: str
    poison_label: str | None
    # its position on the dead-letter topic, once the broker has acknowledged it there
    dlq_partition: int | None = None
    dlq_offset: int | None = None


@dataclass(frozen=True)
class BatchResult:
    stored: int
    duplicates: int
    redeliveries: int
    conflicts: int
    dead: int

    def plus(self, other: BatchResult) -> BatchResult:
        """The counts of two parts of one batch, together."""
        return BatchResult(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.redeliveries + other.redeliveries,
            self.conflicts + other.conflicts,
            self.dead + other.dead,
        )


class Literals:
    """Array literals of a batch's columns, built once."""

    def __init__(self, c: Columns) -> None:
        self.c = c
        self.event_id = texts(c.event_id)
        self.kpart = Int4Array(c.kpart)
        self.koff = Int8Array(c.koff)
        self.chash = Int8Array(c.chash)
        self.ts = TimestamptzArray(c.ts_us)

    def claim(self) -> dict[str, BinaryArray | str]:
        return {"event_id": self.event_id, "kpart": self.kpart, "koff": self.koff, "chash": self.chash}

    def metrics(self) -> dict[str, BinaryArray | str]:
        c = self.c
        return {
            "sensor_id": texts(c.sensor_id),
            "event_id": self.event_id,
            "ts": self.ts,
            "value": Float8Array(c.value),
            "seq": Int8Array(c.seq),
            "kpart": self.kpart,
            "koff": self.koff,
        }


class Others:
    """Rows that were not new: duplicates (another offset), redeliveries (the same offset
    again) and conflicts (other content). Duplicates and conflicts are only candidates until
    the writer's counting statement says which of them were seen for the first time."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, str, int, int]] = []  # id, part, off, kind, hash, stored
        self.redelivered: dict[int, int] = {}

    def classify(self, c: Columns, i: int, stored: tuple[int, int, int] | None) -> None:
        part, off, h = c.kpart[i], c.koff[i], c.chash[i]
        if stored is not None and stored[2] != h:
            self.rows.append((c.event_id[i], part, off, "conflict", h, stored[2]))
        elif stored is not None and (stored[0], stored[1]) == (part, off):
            self.redelivered[part] = self.redelivered.get(part, 0) + 1
        else:  # another offset, same content; or a concurrent writer claimed it first
            self.rows.append((c.event_id[i], part, off, "duplicate", h, stored[2] if stored else h))

    def any(self) -> bool:
        return bool(self.rows or self.redelivered)

    def params(self) -> dict[str, BinaryArray | str]:
        x = self.rows
        rp = sorted(self.redelivered)
        return {
            "o_event": texts([r[0] for r in x]),
            "o_part": Int4Array([r[1] for r in x]),
            "o_off": Int8Array([r[2] for r in x]),
            "o_kind": texts([r[3] for r in x]),
            "o_hash": Int8Array([r[4] for r in x]),
            "o_stored": Int8Array([r[5] for r in x]),
            "r_part": Int4Array(rp),
            "r_n": Int4Array([self.redelivered[p] for p in rp]),
        }
