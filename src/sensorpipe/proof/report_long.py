"""The long-run sections of BENCHMARKS.md: the storage stage and the soak."""

from __future__ import annotations

from typing import Any


def mark(ok: bool) -> str:
    """A target's verdict as the report writes it."""
    return "met" if ok else "**missed**"


def _window_mean(samples: list[dict[str, Any]], name: str, lo: float, hi: float, key: str = "rss_mb") -> float | None:
    vals = [s[key][name] for s in samples if lo <= s["t"] < hi and name in (s.get(key) or {})]
    return sum(vals) / len(vals) if vals else None


def soak(sk: dict[str, Any]) -> list[str]:
    samples, secs = sk["samples"], sk["minutes"] * 60
    out = [
        "## Soak",
        "",
        f"Measured {sk.get('measured_at', 'in an earlier run')}; `make soak` (`sensorpipe bench soak`).",
        "",
        f"The local stack (producer with a ledger, consumer, API) at {sk['rate']:,} events/s for "
        f"{sk['minutes']:g} minutes, on a clock {sk['speed']:g} times faster than the wall, so a simulated "
        f"day ({sk['events_per_simulated_day']:,} events) passes every {86_400 / sk['speed'] / 60:.0f} minutes. "
        f"{sk.get('sensors', 2000):,} sensors. Retention: raw 1 day, 1-minute rollups 2, 1-hour rollups 3; "
        f"PostgreSQL's share {sk['shares']['postgres'] / 2**30:.1f} GiB (about 1.6 simulated days of raw rows "
        "and two of 1-minute rollups), Kafka's "
        f"{sk['shares']['kafka'] / 2**30:.1f} GiB; the free-space floor is hit once, for a minute.",
        "",
        "Targets: RSS of every process flat (last 5 minutes within 10% of minutes 5 to 10); API p99 at the "
        "end within 1.5x of the start; disk never over the shares; the audit shows 0 lost and 0 duplicate rows.",
        "",
        "| process | RSS minutes 5-10 (MB) | RSS last 5 minutes (MB) | ratio |",
        "|---|---:|---:|---:|",
    ]
    names = sorted({n for s in samples for n in s["rss_mb"]})
    marks = []
    for n in names:
        early, late = _window_mean(samples, n, 300, 600), _window_mean(samples, n, secs - 300, secs + 1)
        if early and late:
            out.append(f"| {n} | {early:.1f} | {late:.1f} | {late / early:.2f} |")
            marks.append(late <= 1.1 * early)
    out += ["", f"- RSS flat: {mark(bool(marks) and all(marks))}", ""]
    if marks and not all(marks):
        out += ["What the consumer's memory is and what bounds it: `docs/decisions/009-consumer-memory.md`.", ""]
    out += _soak_pss(samples, names, secs) + _soak_heap(samples, secs)
    out += _soak_api(sk) + _soak_disk(sk) + _soak_audit(sk)
    return out


def _soak_pss(samples: list[dict[str, Any]], names: list[str], secs: float) -> list[str]:
    """The same windows in PSS, where memory shared between processes (PostgreSQL's shared
    buffers across its backends) counts once."""
    rows = []
    for n in names:
        early = _window_mean(samples, n, 300, 600, "pss_mb")
        late = _window_mean(samples, n, secs - 300, secs + 1, "pss_mb")
        if early and late:
            rows.append(f"| {n} | {early:.1f} | {late:.1f} | {late / early:.2f} |")
    if not rows:
        return []
    return [
        "The same windows in PSS (each shared page divided among the processes that map it):",
        "",
        "| process | PSS minutes 5-10 (MB) | PSS last 5 minutes (MB) | ratio |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]


_HEAP = (
    ("anonymous", "anonymous and heap mappings, resident (MB)"),
    ("malloc_in_use", "malloc: in use (MB)"),
    ("malloc_free", "malloc: held free in its arenas (MB)"),
    ("fetch_queue", "librdkafka: fetched ahead (MB)"),
    ("python_kblocks", "Python: object blocks allocated (thousands)"),
)


def _soak_heap(samples: list[dict[str, Any]], secs: float) -> list[str]:
    """The consumer's memory profile in the same windows: its private resident memory beside
    what its allocators say they hold, so a step shows whether live data or held-free memory
    grew."""
    rows = []
    for key, label in _HEAP:
        early = _window_mean(samples, key, 300, 600, "consumer_heap")
        late = _window_mean(samples, key, secs - 300, secs + 1, "consumer_heap")
        peak = max(((s.get("consumer_heap") or {}).get(key, 0) for s in samples), default=0)
        if early is not None and late is not None:
            rows.append(f"| {label} | {early:.1f} | {late:.1f} | {late - early:+.1f} | {peak:.1f} |")
    if not rows:
        return []
    return [
        "The consumer's memory profile in the same windows (its /metrics beside its memory map):",
        "",
        "| measure | minutes 5-10 | last 5 minutes | change | peak |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _soak_api(sk: dict[str, Any]) -> list[str]:
    p = sk["api_p99"]
    if "start" not in p or "end" not in p:
        return ["API p99: not measured at both ends of this run.", ""]
    out = [
        "| endpoint | p99 at the start (ms) | p99 at the end (ms) | ratio | errors start / end |",
        "|---|---:|---:|---:|---:|",
    ]
    ok, errors = True, 0
    for name in ("aggregate", "summary"):
        a, b = p["start"][name].get("p99_ms"), p["end"][name].get("p99_ms")
        bad = (p["start"][name].get("non_2xx", 0), p["end"][name].get("non_2xx", 0))
        errors += sum(bad)
        if a and b:
            out.append(f"| {name} | {a} | {b} | {b / a:.2f} | {bad[0]:,} / {bad[1]:,} |")
            ok = ok and b <= 1.5 * a
    verdict = "not judged: some answers were errors, so the p99s are not of the same work" if errors else mark(ok)
    return [
        *out,
        "",
        f"- API p99 at the end within 1.5x of the start: {verdict}",
        "",
        *_soak_activity(p),
        *_soak_memory(sk),
    ]


def _soak_activity(p: dict[str, Any]) -> list[str]:
    """Where the API's statements spent the p99 windows (proof.soak.ActivitySampler)."""
    rows = []
    for when in ("start", "end"):
        for name in ("aggregate", "summary"):
            got = p[when][name]
            act = got.get("activity")
            if not act:
                continue
            drops = ", ".join(f"{d} {r}" for r, d in sorted(got.get("drops_during", {}).items()) if d) or "none"
            for t in act["top"][:4]:
                secs = t["seen"] * act["interval_s"]
                stmt = t["statement"].replace("|", "\\|")
                rows.append(f"| {when} | {name} | {drops} | {t['wait']} | `{stmt}` | {secs:.1f} |")
    if not rows:
        return []
    return [
        "The API's statements during each 10 s p99 window, sampled from `pg_stat_activity` every 100 ms "
        "(seconds = samples x 0.1 s, summed over concurrent statements; the most seen first):",
        "",
        "| window | endpoint | days dropped during it | waiting on | statement | seconds |",
        "|---|---|---|---|---|---:|",
        *rows,
        "",
    ]


def _soak_memory(sk: dict[str, Any]) -> list[str]:
    """Resident memory by kind of mapping (proof.memmap) where the API p99 was measured."""
    mem = sk.get("memory") or {}
    if "start" not in mem or "end" not in mem:
        return []
    out = [
        "Resident memory by kind of mapping (MB, start -> end; `heap` is the main malloc arena, `anonymous` "
        "the other threads' arenas, Python's object arenas and librdkafka's buffers):",
        "",
        "| process | heap | anonymous | files |",
        "|---|---:|---:|---:|",
    ]
    for name in sorted(mem["end"]):
        a, b = mem["start"].get(name), mem["end"].get(name)
        if a and b:
            cells = " | ".join(f"{a[k]} -> {b[k]}" for k in ("heap", "anonymous", "files"))
            out.append(f"| {name} | {cells} |")
    return [*out, ""]


def _soak_disk(sk: dict[str, Any]) -> list[str]:
    samples, shares = sk["samples"], sk["shares"]
    kmax = max((s["kafka_bytes"] for s in samples), default=0)
    pmax = max((s["postgres_bytes"] for s in samples), default=0)
    lag = max((s["lag"] for s in samples), default=0)
    drops = samples[-1]["drops"] if samples else {}
    hold = sk.get("floor_hold") or {}
    over = any(s["over_share"] for s in samples)
    return [
        f"- Kafka log at most {kmax / 2**20:,.0f} MiB of its {shares['kafka'] / 2**20:,.0f} MiB share; PostgreSQL's "
        f"database at most {pmax / 2**20:,.0f} MiB of its {shares['postgres'] / 2**20:,.0f} MiB share; never over: "
        f"{mark(not over)}",
        f"- Raw days dropped: {drops.get('time', 0)} by time, {drops.get('size', 0)} by size",
        *_tier_line(sk),
        f"- Free-space floor: {hold.get('stored_while_held', '–')} events written while held for "
        f"{hold.get('held_s', '–')} s (lag then {hold.get('lag_at_end_of_hold', '–'):,}); resumed "
        f"{hold.get('resumed_after_s', '–')} s after space returned",
        f"- Lag: at most {lag:,} messages; backlog drained after the load: {sk['drained']}",
        "",
    ]


def _tier_line(sk: dict[str, Any]) -> list[str]:
    t = sk.get("tiers_at_end")
    if not t:
        return []
    return [
        f"- Oldest row of each tier at the end, in simulated days: raw {t['raw']}, 1-minute {t['1m']}, "
        f"1-hour {t['1h']} (kept: 1, 2 and 3 days, counted from UTC midnights)"
    ]


def _soak_audit(sk: dict[str, Any]) -> list[str]:
    a = sk["audit"]
    dup = a["duplicate_rows_metrics"] + a["duplicate_rows_processed"]
    return [
        f"Audit: {a['acked']:,} acknowledged events expected in the store, {a['stored']:,} stored, "
        f"{a['dropped_by_retention']:,} stamped before the raw horizon (dropped with their day, or dead-lettered "
        "as out of window when their day went while they waited in Kafka), "
        f"{a['lost']:,} lost, {dup:,} duplicate rows, {a['order_violations']:,} order violations.",
        "",
        f"- 0 lost and 0 duplicate rows: {mark(a['lost'] == 0 and dup == 0)}",
        "",
    ]


STORAGE_TARGET = 200  # bytes per event in PostgreSQL's hot rows, all in


def storage(st: dict[str, Any]) -> list[str]:
    out = [
        "## Storage",
        "",
        f"Measured {st.get('measured_at', 'in an earlier run')}.",
        "",
        f"Target: PostgreSQL's hot rows ≤ {STORAGE_TARGET} bytes per event, all in (rows, dedupe, rollups, "
        "indexes); producer compression chosen by bytes and CPU per event measured here.",
        "",
        f"The same load ({st['events']:,} events of 2,000 sensors, the producer unthrottled) written once per "
        "codec, then drained by one consumer into a fresh database. CPU is per event, in microseconds.",
        "",
        "| codec | Kafka log B/event | producer us | broker us | consumer us | consumer events/s "
        "| WAL written B/event |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in st["codecs"]:
        out.append(
            f"| {c['codec']} | {c['kafka_bytes_per_event']} | {c['producer_us_per_event']} "
            f"| {c['broker_us_per_event']} | {c['consumer_us_per_event']} | {c['consumer_events_per_s']:,} "
            f"| {c['wal_bytes_per_event']} |"
        )
    rss = [f"{c['codec']} {c['consumer_peak_rss_mb']} MB" for c in st["codecs"] if "consumer_peak_rss_mb" in c]
    if rss:
        out += ["", f"Consumer peak RSS: {', '.join(rss)}."]
    out += ["", "PostgreSQL at rest, bytes per event (after `VACUUM ANALYZE`):", ""]
    out += ["| part | heap | indexes |", "|---|---:|---:|"]
    for name, v in st["postgres"].items():
        out.append(f"| {name} | {v['heap']} | {v['indexes']} |")
    total = st["postgres_bytes_per_event"]
    out += [
        f"| **all** | **{total}** | |",
        "",
        f"- hot rows ≤ {STORAGE_TARGET} bytes per event: {mark(total <= STORAGE_TARGET)} ({total})"
        + ("" if total <= STORAGE_TARGET else "; why, and the path below it: `docs/decisions/003-hot-row-bytes.md`"),
        "",
        *_anatomy(st.get("anatomy") or {}),
        "Published figures for other stores, for scale (quoted, not measured here):",
        "",
    ]
    out += [f"- {text} ({source})" for text, source in st["references"]]
    return [*out, ""]


def _anatomy(an: dict[str, Any]) -> list[str]:
    """Where the bytes of one row of each table written per event go (storage.bench.row_anatomy)."""
    if not an:
        return []
    out = [
        "Where a row's bytes go, per row: the tuple is PostgreSQL's 24-byte header plus the columns with "
        "their alignment; each tuple has a 4-byte line pointer; the rest of the heap is page headers and "
        "free space. Column widths are the planner's averages.",
        "",
        "| table | tuple | line pointer | pages, free space | indexes | columns |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, a in an.items():
        idx = ", ".join(f"{k} {v}" for k, v in a["indexes"].items())
        cols = ", ".join(f"{k} {v}" for k, v in sorted(a["columns"].items(), key=lambda kv: -kv[1]))
        out.append(f"| {name} | {a['tuple']} | {a['line_pointer']} | {a['page_slack']} | {idx} | {cols} |")
    return [*out, ""]
