"""A batch's rollups, computed with numpy so that the database only applies them: per
(sensor, minute) and (partition, minute), the running state per sensor, and stored counts per
partition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorpipe.storage.arrays import BinaryArray, Float8Array, Int4Array, Int8Array, TimestamptzArray, texts
from sensorpipe.storage.batch import Columns


def _groups(
    v: np.ndarray, primary: np.ndarray, secondary: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """count, sum, min and max of `v` per (primary, secondary), in that key order. Returns the
    two keys of each group, then its count, sum, min and max. Sums add the values in batch
    order (bincount's loop), so they are the same doubles as a running sum row by row."""
    order = np.lexsort((secondary, primary))  # stable: rows of one group keep batch order
    p, s = primary[order], secondary[order]
    first = np.empty(len(order), dtype=bool)
    first[0] = True
    first[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(first)
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = np.cumsum(first) - 1  # each row's group, in batch order
    g = len(starts)
    vs = v[order]
    return (
        p[starts],
        s[starts],
        np.bincount(labels, minlength=g),
        np.bincount(labels, weights=v, minlength=g),
        np.minimum.reduceat(vs, starts),
        np.maximum.reduceat(vs, starts),
    )


@dataclass(frozen=True)
class Stats:
    """count, sum, min and max of the values of each group."""

    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def encoded(self, prefix: str) -> dict[str, BinaryArray | str]:
        return {
            f"{prefix}_count": Int8Array(self.count),
            f"{prefix}_sum": Float8Array(self.sum),
            f"{prefix}_min": Float8Array(self.min),
            f"{prefix}_max": Float8Array(self.max),
        }


@dataclass(frozen=True)
class SensorMinutes:
    """metrics_1m's rows: per (sensor, minute), in that key order."""

    sensor: list[str]
    minute: np.ndarray  # epoch minutes
    stats: Stats


@dataclass(frozen=True)
class PartitionMinutes:
    """metrics_1m_partition's rows: per (minute, Kafka partition), in that key order."""

    minute: np.ndarray  # epoch minutes
    part: np.ndarray
    stats: Stats


@dataclass(frozen=True)
class SensorState:
    """sensor_stats' changes, per sensor in id order: the batch's rows, its first and last seq,
    the last value and time (epoch us), and its steps that skipped seqs or went back."""

    sensor: list[str]
    n: np.ndarray
    first: np.ndarray
    last: np.ndarray
    value: np.ndarray
    ts: np.ndarray
    gaps: np.ndarray
    violations: np.ndarray


@dataclass(frozen=True)
class Rollups:
    by_sensor: SensorMinutes
    by_partition: PartitionMinutes
    sensors: SensorState
    stored_parts: np.ndarray  # Kafka partitions with stored rows, ascending
    stored: np.ndarray  # rows stored in each

    def params(self) -> dict[str, BinaryArray | str]:
        """The write statement's parameters (storage.writer._WRITE_NEW names them)."""
        r, p, s = self.by_sensor, self.by_partition, self.sensors
        return {
            "r_sensor": texts(r.sensor),
            "r_minute": _minutes(r.minute),
            **r.stats.encoded("r"),
            "p_part": Int4Array(p.part),
            "p_minute": _minutes(p.minute),
            **p.stats.encoded("p"),
            "s_sensor": texts(s.sensor),
            "s_n": Int8Array(s.n),
            "s_first": Int8Array(s.first),
            "s_last": Int8Array(s.last),
            "s_value": Float8Array(s.value),
            "s_ts": TimestamptzArray(s.ts),
            "s_gaps": Int8Array(s.gaps),
            "s_viol": Int8Array(s.violations),
            "c_part": Int4Array(self.stored_parts),
            "c_stored": Int8Array(self.stored),
        }


def aggregate(c: Columns) -> Rollups:
    """Rollups per (sensor, minute) and per (partition, minute), running state per sensor and
    stored counts per partition, computed here so the database only applies them. `c` must
    not be empty.

    Each table's rows come in its key order, so concurrent writers lock rows in the same order
    and cannot deadlock. A sensor's state takes its rows in batch order: its first and last
    seq, the last value and time, and how many steps skipped seqs (a gap) or went back (an
    order violation). Vectorised, on the writer thread that shares the GIL with decoding
    (docs/decisions/006-write-statements.md)."""
    n = len(c)
    names = sorted(set(c.sensor_id))
    rank = {sid: i for i, sid in enumerate(names)}
    code = np.fromiter(map(rank.__getitem__, c.sensor_id), dtype=np.int64, count=n)  # sorts like the ids
    ts = np.array(c.ts_us, dtype=np.int64)
    v = np.array(c.value, dtype=np.float64)
    kp = np.array(c.kpart, dtype=np.int64)
    minute = ts // 60_000_000
    r_code, r_minute, *r_stats = _groups(v, code, minute)
    p_minute, p_part, *p_stats = _groups(v, minute, kp)
    parts, stored = np.unique(kp, return_counts=True)
    return Rollups(
        SensorMinutes([names[i] for i in r_code.tolist()], r_minute, Stats(*r_stats)),
        PartitionMinutes(p_minute, p_part, Stats(*p_stats)),
        _state(names, code, ts, v, np.array(c.seq, dtype=np.int64)),
        parts,
        stored,
    )


def _state(names: list[str], code: np.ndarray, ts: np.ndarray, v: np.ndarray, seq: np.ndarray) -> SensorState:
    """Each sensor's state from its rows, grouped by sensor with batch order kept within each;
    every name has rows, so group i is names[i]."""
    n = len(code)
    order = np.argsort(code, kind="stable")
    sc, sq = code[order], seq[order]
    first = np.empty(n, dtype=bool)
    first[0] = True
    first[1:] = sc[1:] != sc[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n) - 1
    group = np.cumsum(first) - 1
    step = sq[1:] - sq[:-1]  # no overflow: both are in [0, 2**63)
    same = ~first[1:]  # row i + 1 follows row i of the same sensor
    g = len(starts)
    return SensorState(
        names,
        np.diff(np.append(starts, n)),
        sq[starts],
        sq[ends],
        v[order][ends],
        ts[order][ends],
        np.bincount(group[1:][same & (step > 1)], minlength=g),
        np.bincount(group[1:][same & (step <= 0)], minlength=g),
    )


def _minutes(minutes: np.ndarray) -> TimestamptzArray:
    return TimestamptzArray(minutes * 60_000_000)


def params(c: Columns) -> dict[str, BinaryArray | str]:
    """`aggregate(c)` as the write statement's parameters."""
    return aggregate(c).params()
