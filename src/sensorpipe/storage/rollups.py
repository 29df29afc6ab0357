"""A batch's rollups, computed with numpy so that the database only applies them: per
(sensor, minute) and (partition, minute), the running state per sensor, and stored counts per
partition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def aggregate(c: Columns) -> dict[str, Any]:
    """Rollups per (sensor, minute) and per (partition, minute), running state per sensor and
    stored counts per partition, computed here so the database only applies them: numpy arrays
    for the numbers, lists of str for the sensor ids. `c` must not be empty.

    Each table's rows come in its key order, so concurrent writers lock rows in the same order
    and cannot deadlock. A sensor's state takes its rows in batch order: its first and last
    seq, the last value and time, and how many steps skipped seqs (a gap) or went back (an
    order violation). Vectorised: 0.48-0.73 us per row against 2.75-3.11 for a dict per group
    updated row by row (batches of 20,000 rows, best of 7), on the writer thread that shares
    the GIL with decoding."""
    n = len(c)
    names = sorted(set(c.sensor_id))
    rank = {sid: i for i, sid in enumerate(names)}
    code = np.fromiter(map(rank.__getitem__, c.sensor_id), dtype=np.int64, count=n)  # sorts like the ids
    ts = np.array(c.ts_us, dtype=np.int64)
    v = np.array(c.value, dtype=np.float64)
    seq = np.array(c.seq, dtype=np.int64)
    kp = np.array(c.kpart, dtype=np.int64)
    minute = ts // 60_000_000
    r_code, r_minute, r_count, r_sum, r_min, r_max = _groups(v, code, minute)
    p_minute, p_part, p_count, p_sum, p_min, p_max = _groups(v, minute, kp)
    # sensor state: rows grouped by sensor, batch order kept within each
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
    parts, stored = np.unique(kp, return_counts=True)
    return {
        "r_sensor": [names[i] for i in r_code.tolist()],
        "r_minute": r_minute,
        "r_count": r_count,
        "r_sum": r_sum,
        "r_min": r_min,
        "r_max": r_max,
        "p_part": p_part,
        "p_minute": p_minute,
        "p_count": p_count,
        "p_sum": p_sum,
        "p_min": p_min,
        "p_max": p_max,
        "s_sensor": names,  # every name has rows, so group i is names[i]
        "s_n": np.diff(np.append(starts, n)),
        "s_first": sq[starts],
        "s_last": sq[ends],
        "s_value": v[order][ends],
        "s_ts": ts[order][ends],
        "s_gaps": np.bincount(group[1:][same & (step > 1)], minlength=g),
        "s_viol": np.bincount(group[1:][same & (step <= 0)], minlength=g),
        "c_part": parts,
        "c_stored": stored,
    }


def _minutes(minutes: np.ndarray) -> TimestamptzArray:
    return TimestamptzArray(minutes * 60_000_000)


# How each of `aggregate`'s results travels; a result without an entry fails loudly.
_ENCODE: dict[str, Callable[[Any], BinaryArray | str]] = {
    "r_sensor": texts,
    "r_minute": _minutes,
    "r_count": Int8Array,
    "r_sum": Float8Array,
    "r_min": Float8Array,
    "r_max": Float8Array,
    "p_part": Int4Array,
    "p_minute": _minutes,
    "p_count": Int8Array,
    "p_sum": Float8Array,
    "p_min": Float8Array,
    "p_max": Float8Array,
    "s_sensor": texts,
    "s_n": Int8Array,
    "s_first": Int8Array,
    "s_last": Int8Array,
    "s_value": Float8Array,
    "s_ts": TimestamptzArray,
    "s_gaps": Int8Array,
    "s_viol": Int8Array,
    "c_part": Int4Array,
    "c_stored": Int8Array,
}


def params(c: Columns) -> dict[str, BinaryArray | str]:
    """`aggregate(c)` as the statement's parameters."""
    return {name: _ENCODE[name](values) for name, values in aggregate(c).items()}
