"""The writer's vectorised batch aggregates against a plain row-by-row reference."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sensorpipe.storage.batch import Columns
from sensorpipe.storage.rollups import Rollups, aggregate


def reference(c: Columns) -> dict[str, list[Any]]:
    """The same aggregates, one row at a time, in batch order."""
    roll: dict[tuple[str, int], list[float]] = {}
    proll: dict[tuple[int, int], list[float]] = {}
    sens: dict[str, list[float]] = {}  # n, first, last, value, ts, gaps, violations
    parts: dict[int, int] = {}
    for sid, ts, v, seq, kp in zip(c.sensor_id, c.ts_us, c.value, c.seq, c.kpart, strict=True):
        minute = ts // 60_000_000
        for r in (roll.setdefault((sid, minute), [0, 0.0, v, v]), proll.setdefault((kp, minute), [0, 0.0, v, v])):
            r[0] += 1
            r[1] += v
            r[2], r[3] = min(r[2], v), max(r[3], v)
        st = sens.get(sid)
        if st is None:
            sens[sid] = [1, seq, seq, v, ts, 0, 0]
        else:
            st[5] += seq > st[2] + 1
            st[6] += seq <= st[2]
            st[0] += 1
            st[2], st[3], st[4] = seq, v, ts
        parts[kp] = parts.get(kp, 0) + 1
    rk = sorted(roll)
    qk = sorted(proll, key=lambda k: (k[1], k[0]))
    sk = sorted(sens)
    out: dict[str, list[Any]] = {"r_sensor": [k[0] for k in rk], "r_minute": [k[1] for k in rk]}
    for i, col in enumerate(("count", "sum", "min", "max")):
        out[f"r_{col}"] = [roll[k][i] for k in rk]
        out[f"p_{col}"] = [proll[k][i] for k in qk]
    out["p_part"], out["p_minute"] = [k[0] for k in qk], [k[1] for k in qk]
    for i, col in enumerate(("n", "first", "last", "value", "ts", "gaps", "viol")):
        out[f"s_{col}"] = [sens[k][i] for k in sk]
    out["s_sensor"] = sk
    out["c_part"], out["c_stored"] = sorted(parts), [parts[k] for k in sorted(parts)]
    return out


def named(r: Rollups) -> dict[str, list[Any]]:
    """The typed result under the reference's names (the write statement's parameters)."""
    m, p, s = r.by_sensor, r.by_partition, r.sensors
    out: dict[str, Any] = {"r_sensor": m.sensor, "r_minute": m.minute, "p_part": p.part, "p_minute": p.minute}
    for col in ("count", "sum", "min", "max"):
        out[f"r_{col}"], out[f"p_{col}"] = getattr(m.stats, col), getattr(p.stats, col)
    out |= {"s_sensor": s.sensor, "s_n": s.n, "s_first": s.first, "s_last": s.last, "s_value": s.value}
    out |= {"s_ts": s.ts, "s_gaps": s.gaps, "s_viol": s.violations, "c_part": r.stored_parts, "c_stored": r.stored}
    return {k: v if isinstance(v, list) else v.tolist() for k, v in out.items()}


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_aggregates_equal_the_row_by_row_reference(seed: int) -> None:
    rng = random.Random(seed)
    c = Columns()
    base = 1_790_000_000_000_000 + rng.randrange(60_000_000)
    seqs: dict[str, int] = {}
    for i in range(rng.choice([1, 2, 50, 3000])):
        sid = f"sensor-{rng.randrange(40):03d}"
        # mostly the next seq; sometimes a gap, a repeat or a step back
        seq = max(0, seqs.get(sid, rng.randrange(5)) + rng.choice([1, 1, 1, 1, 2, 5, 0, -1, -3]))
        seqs[sid] = seq
        value = rng.choice([rng.uniform(-1e6, 1e6), -0.0, 0.0, 1e15, -1e15, 0.1, rng.gauss(20, 5)])
        ts = base + rng.randrange(-30, 300) * 1_000_000  # straddles several minutes, not sorted
        c.append(f"e{i}", sid, ts, value, seq, rng.randrange(12), i, i)
    got = named(aggregate(c))
    want = reference(c)
    assert set(got) == set(want) == set(aggregate(c).params())  # every statement parameter is checked
    for name, values in want.items():
        assert got[name] == values, name  # sums included: the same additions in the same order


def test_one_sensor_counts_gaps_and_order_violations_in_batch_order() -> None:
    c = Columns()
    for i, seq in enumerate([3, 4, 7, 6, 6, 8]):  # 4->7 a gap, 7->6 and 6->6 back, 6->8 a gap
        c.append(f"e{i}", "s", 60_000_000 * i, float(i), seq, 0, i, i)
    got = aggregate(c)
    st = got.sensors
    assert st.sensor == ["s"]
    assert (st.n.tolist(), st.first.tolist(), st.last.tolist()) == ([6], [3], [8])
    assert (st.gaps.tolist(), st.violations.tolist()) == ([2], [2])
    assert (st.value.tolist(), st.ts.tolist()) == ([5.0], [300_000_000])
    assert got.by_sensor.minute.tolist() == [0, 1, 2, 3, 4, 5]
