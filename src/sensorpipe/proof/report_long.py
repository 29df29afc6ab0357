"""The long-run sections of BENCHMARKS.md: the storage stage and the soak."""

from __future__ import annotations

from collections.abc import Callable

from sensorpipe.proof import results as res


def mark(ok: bool) -> str:
    """A target's verdict as the report writes it."""
    return "met" if ok else "**missed**"


def measured(stage: res.Stage) -> str:
    """When and where a stage was measured, as each section opens (without a full stop)."""
    when = stage.measured_at or "in an earlier run"
    m = stage.machine
    return f"Measured {when} on {m.cpu}, {m.cores} cores" if m else f"Measured {when} (machine not recorded)"


Series = Callable[[res.SoakSample], dict[str, float] | None]


def _rss(s: res.SoakSample) -> dict[str, float]:
    return s.rss_mb


def _pss(s: res.SoakSample) -> dict[str, float]:
    return s.pss_mb


def _heap(s: res.SoakSample) -> dict[str, float] | None:
    return s.consumer_heap


def _window_mean(samples: list[res.SoakSample], name: str, lo: float, hi: float, of: Series = _rss) -> float | None:
    """The mean of one series of `of` (a process's RSS by default) over samples in [lo, hi) s."""
    vals = [v[name] for s in samples if lo <= s.t < hi and name in (v := of(s) or {})]
    return sum(vals) / len(vals) if vals else None


def soak(sk: res.SoakResult) -> list[str]:
    samples, secs = sk.samples, sk.minutes * 60
    out = [
        "## Soak",
        "",
        f"{measured(sk)}; `make soak` (`sensorpipe bench soak`).",
        "",
        f"The local stack (producer with a ledger, consumer, {_compactor(sk)}API) at {sk.rate:,} events/s for "
        f"{sk.minutes:g} minutes, on a clock {sk.speed:g} times faster than the wall, so a simulated "
        f"day ({sk.events_per_simulated_day:,} events) passes every {86_400 / sk.speed / 60:.0f} minutes. "
        f"{sk.sensors:,} sensors. Retention: {_retention(sk)}; "
        f"PostgreSQL's share {sk.shares.postgres / 2**30:.1f} GiB (about {'2.5' if _compacting(sk) else '1.6'} "
        f"simulated days of raw rows and {'four' if _compacting(sk) else 'two'} of 1-minute rollups), Kafka's "
        f"{sk.shares.kafka / 2**30:.1f} GiB; the free-space floor is hit once, for a minute.",
        "",
        "Targets: RSS of every process flat (last 5 minutes within 10% of minutes 5 to 10); API p99 at the "
        "end within 1.5x of the start; disk never over the shares; the audit shows 0 lost and 0 duplicate rows.",
        "",
        "| process | RSS minutes 5-10 (MB) | RSS last 5 minutes (MB) | ratio |",
        "|---|---:|---:|---:|",
    ]
    names = sorted({n for s in samples for n in s.rss_mb})
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
    out += _soak_api(sk) + _soak_disk(sk) + _soak_compaction(sk) + _soak_audit(sk)
    return out


def _compacting(sk: res.SoakResult) -> bool:
    return any(s.compaction_backlog is not None for s in sk.samples)


def _compactor(sk: res.SoakResult) -> str:
    return "compactor, " if _compacting(sk) else ""


def _retention(sk: res.SoakResult) -> str:
    if _compacting(sk):
        return "raw 3 days (the compactor compacting each day before yesterday), 1-minute rollups 4, 1-hour rollups 5"
    return "raw 1 day, 1-minute rollups 2, 1-hour rollups 3"


def _soak_compaction(sk: res.SoakResult) -> list[str]:
    """Whether the compactor kept up: closed days still holding rows, sampled every 10 s."""
    backlog = [s.compaction_backlog for s in sk.samples if s.compaction_backlog is not None]
    if not backlog:
        return []
    peak = max(s.compacted_events for s in sk.samples)
    half = len(backlog) // 2
    return [
        f"- compaction keeps up (closed days holding rows never more than 1, the day that has just closed): "
        f"{mark(max(backlog) <= 1)} (most {max(backlog)}; first half {max(backlog[:half] or [0])}, second half "
        f"{max(backlog[half:])}; at most {peak:,} events held compacted at once, before retention dropped them)",
        "",
    ]


def _soak_pss(samples: list[res.SoakSample], names: list[str], secs: float) -> list[str]:
    """The same windows in PSS, where memory shared between processes (PostgreSQL's shared
    buffers across its backends) counts once."""
    rows = []
    for n in names:
        early = _window_mean(samples, n, 300, 600, _pss)
        late = _window_mean(samples, n, secs - 300, secs + 1, _pss)
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


def _soak_heap(samples: list[res.SoakSample], secs: float) -> list[str]:
    """The consumer's memory profile in the same windows: its private resident memory beside
    what its allocators say they hold, so a step shows whether live data or held-free memory
    grew."""
    rows = []
    for key, label in _HEAP:
        early = _window_mean(samples, key, 300, 600, _heap)
        late = _window_mean(samples, key, secs - 300, secs + 1, _heap)
        peak = max(((s.consumer_heap or {}).get(key, 0) for s in samples), default=0)
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


def _soak_api(sk: res.SoakResult) -> list[str]:
    start, end = sk.api_p99.start, sk.api_p99.end
    if start is None or end is None:
        return ["API p99: not measured at both ends of this run.", ""]
    out = [
        "| endpoint | p99 at the start (ms) | p99 at the end (ms) | ratio | errors start / end |",
        "|---|---:|---:|---:|---:|",
    ]
    ok, errors = True, 0
    for name in ("aggregate", "summary"):
        first, last = getattr(start, name), getattr(end, name)
        a, b = first.p99_ms, last.p99_ms
        bad = (first.non_2xx, last.non_2xx)
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
        *_soak_activity(sk.api_p99),
        *_soak_memory(sk.memory),
    ]


def _soak_activity(p: res.Ends) -> list[str]:
    """Where the API's statements spent the p99 windows (proof.soak.ActivitySampler)."""
    rows = []
    for when in ("start", "end"):
        window = getattr(p, when)
        for name in ("aggregate", "summary"):
            got = getattr(window, name)
            act = got.activity
            if not act:
                continue
            drops = ", ".join(f"{d} {r}" for r, d in sorted(got.drops_during.items()) if d) or "none"
            for t in act.top[:4]:
                secs = t.seen * act.interval_s
                stmt = t.statement.replace("|", "\\|")
                rows.append(f"| {when} | {name} | {drops} | {t.wait} | `{stmt}` | {secs:.1f} |")
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


def _soak_memory(mem: res.MemoryEnds) -> list[str]:
    """Resident memory by kind of mapping (proof.memmap) where the API p99 was measured."""
    if mem.start is None or mem.end is None:
        return []
    out = [
        "Resident memory by kind of mapping (MB, start -> end; `heap` is the main malloc arena, `anonymous` "
        "the other threads' arenas, Python's object arenas and librdkafka's buffers):",
        "",
        "| process | heap | anonymous | files |",
        "|---|---:|---:|---:|",
    ]
    for name in sorted(mem.end):
        a, b = mem.start.get(name), mem.end.get(name)
        if a and b:
            cells = " | ".join(f"{a[k]} -> {b[k]}" for k in ("heap", "anonymous", "files"))
            out.append(f"| {name} | {cells} |")
    return [*out, ""]


def _soak_disk(sk: res.SoakResult) -> list[str]:
    samples, shares = sk.samples, sk.shares
    kmax = max((s.kafka_bytes for s in samples), default=0)
    pmax = max((s.postgres_bytes for s in samples), default=0)
    lag = max((s.lag for s in samples), default=0)
    drops = samples[-1].drops if samples else {}
    over = any(s.over_share for s in samples)
    return [
        f"- Kafka log at most {kmax / 2**20:,.0f} MiB of its {shares.kafka / 2**20:,.0f} MiB share; PostgreSQL's "
        f"database at most {pmax / 2**20:,.0f} MiB of its {shares.postgres / 2**20:,.0f} MiB share; never over: "
        f"{mark(not over)}",
        f"- Raw days dropped: {drops.get('time', 0)} by time, {drops.get('size', 0)} by size",
        *_tier_line(sk.tiers_at_end),
        *_hold_line(sk.floor_hold),
        f"- Lag: at most {lag:,} messages; backlog drained after the load: {sk.drained}",
        "",
    ]


def _hold_line(hold: res.FloorHold | None) -> list[str]:
    if hold is None:
        return ["- Free-space floor: not held in this run"]
    return [
        f"- Free-space floor: {hold.stored_while_held} events written while held for {hold.held_s} s "
        f"(lag then {hold.lag_at_end_of_hold:,}); resumed {hold.resumed_after_s} s after space returned"
    ]


def _tier_line(t: res.Tiers | None) -> list[str]:
    if t is None:
        return []
    return [
        f"- Oldest row of each tier at the end, in simulated days: raw {t.raw}, 1-minute {t.minute}, "
        f"1-hour {t.hour} (kept: 1, 2 and 3 days, counted from UTC midnights)"
    ]


def _soak_audit(sk: res.SoakResult) -> list[str]:
    a = sk.audit
    dup = a.duplicate_rows_metrics + a.duplicate_rows_processed
    return [
        f"Audit: {a.acked:,} acknowledged events expected in the store, {a.stored:,} stored, "
        f"{a.dropped_by_retention:,} stamped before the raw horizon (dropped with their day, or dead-lettered "
        "as out of window when their day went while they waited in Kafka), "
        f"{a.lost:,} lost, {dup:,} duplicate rows, {a.order_violations:,} order violations.",
        "",
        f"- 0 lost and 0 duplicate rows: {mark(a.lost == 0 and dup == 0)}",
        "",
    ]


STORAGE_TARGET = 200  # bytes per event in PostgreSQL's hot rows, all in
COMPACTED_TARGET = 40  # bytes per event of a compacted day, all in
COMPACTION_SPEED_TARGET = 200_000  # events/s, compaction measured alone


def storage(st: res.StorageResult) -> list[str]:
    out = [
        "## Storage",
        "",
        f"{measured(st)}.",
        "",
        f"Target: PostgreSQL's hot rows ≤ {STORAGE_TARGET} bytes per event, all in (rows, dedupe, rollups, "
        "indexes); producer compression chosen by bytes and CPU per event measured here.",
        "",
        f"The same load ({st.events:,} events of 2,000 sensors, the producer unthrottled) written once per "
        "codec, then drained by one consumer into a fresh database. CPU is per event, in microseconds.",
        "",
        "| codec | Kafka log B/event | producer us | broker us | consumer us | consumer events/s "
        "| WAL written B/event |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in st.codecs:
        out.append(
            f"| {c.codec} | {c.kafka_bytes_per_event} | {c.producer_us_per_event} "
            f"| {c.broker_us_per_event} | {c.consumer_us_per_event} | {c.consumer_events_per_s or 0:,} "
            f"| {c.wal_bytes_per_event} |"
        )
    rss = [f"{c.codec} {c.consumer_peak_rss_mb} MB" for c in st.codecs if c.consumer_peak_rss_mb is not None]
    if rss:
        out += ["", f"Consumer peak RSS: {', '.join(rss)}."]
    out += ["", "PostgreSQL at rest, bytes per event (after `VACUUM ANALYZE`):", ""]
    out += ["| part | heap | indexes |", "|---|---:|---:|"]
    for name, v in st.postgres.items():
        out.append(f"| {name} | {v.heap} | {v.indexes} |")
    total = st.postgres_bytes_per_event
    out += [
        f"| **all** | **{total}** | |",
        "",
        f"- hot rows ≤ {STORAGE_TARGET} bytes per event: {mark(total <= STORAGE_TARGET)} ({total})"
        + ("" if total <= STORAGE_TARGET else "; why, and the path below it: `docs/decisions/003-hot-row-bytes.md`"),
        "",
        *_anatomy(st.anatomy),
        *_compaction(st.compaction),
        "Published figures for other stores, for scale (quoted, not measured here):",
        "",
    ]
    out += [f"- {text} ({source})" for text, source in st.references]
    return [*out, ""]


def _anatomy(an: dict[str, res.Anatomy]) -> list[str]:
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
        idx = ", ".join(f"{k} {v}" for k, v in a.indexes.items())
        cols = ", ".join(f"{k} {v}" for k, v in sorted(a.columns.items(), key=lambda kv: -kv[1]))
        out.append(f"| {name} | {a.tuple} | {a.line_pointer} | {a.page_slack} | {idx} | {cols} |")
    return [*out, ""]


def _compaction(c: res.Compaction | None) -> list[str]:
    """The compacted tier: the same days before and after compaction (storage.compaction)."""
    if c is None:
        return []
    ratio = c.hot_bytes_per_event / c.compacted_bytes_per_event if c.compacted_bytes_per_event else 0.0
    mb = {k: round(v / 1e6, 1) for k, v in c.hot_bytes.items()}
    cmb = {k: round(v / 1e6, 1) for k, v in c.compacted_bytes.items()}
    return [
        f"Compacted days (targets: ≤ {COMPACTED_TARGET} bytes per event all in; compaction alone "
        f"≥ {COMPACTION_SPEED_TARGET:,} events/s). The drained database's days compacted as the compactor does "
        "a closed day, timed alone; bytes on disk of the raw-event data after `VACUUM` (rollups are the same in "
        "both forms and left out of both).",
        "",
        "| form | rows (heap, indexes) | dedupe table | chunks | id directory | bytes per event |",
        "|---|---:|---:|---:|---:|---:|",
        f"| hot | {mb['rows']} MB | {mb['dedupe']} MB | - | - | {c.hot_bytes_per_event} |",
        f"| compacted | {cmb['rows']} MB | ({cmb['dedupe']} MB) | {cmb['chunks']} MB | {cmb['directory']} MB "
        f"| {c.compacted_bytes_per_event} |",
        "",
        f"- {c.events:,} events in {c.chunks:,} chunks; the codec wrote {c.encoded_bytes_per_event} bytes per "
        f"event, the rest is PostgreSQL's (TOAST pages, tuples, indexes). The dedupe table's emptied space "
        "(in brackets) is reused by the hot days' rows and is not counted against the compacted days.",
        f"- ≤ {COMPACTED_TARGET} bytes per event: {mark(c.compacted_bytes_per_event <= COMPACTED_TARGET)} "
        f"({c.compacted_bytes_per_event}; {ratio:.1f}× smaller than the hot form)",
        f"- compaction ≥ {COMPACTION_SPEED_TARGET:,} events/s: {mark(c.events_per_s >= COMPACTION_SPEED_TARGET)} "
        f"({c.events_per_s:,} events/s in {c.seconds} s; {c.events_per_cpu_s:,} events per CPU-second; CPU us per "
        f"event: compactor {c.cpu_us_per_event['compactor']}, PostgreSQL {c.cpu_us_per_event['postgres']})",
        "",
    ]
