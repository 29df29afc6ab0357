"""The peer section of BENCHMARKS.md: sensorpipe against Kafka Connect with the Debezium JDBC
sink (proof.peer_stage, proof.peer_check)."""

from __future__ import annotations

from sensorpipe.proof import results as res
from sensorpipe.proof.report_long import mark, measured

PEER_TARGET = 3.0  # our events per CPU-second over the peer's best


def peer(p: res.PeerResult, profile: res.Profile | None = None, e2e: res.E2EResult | None = None) -> list[str]:
    ours, others = p.runs[0], p.runs[1:]
    out = [
        "## Against a peer: Kafka Connect with the Debezium JDBC sink",
        "",
        f"{measured(p)}; {p.peer}, standalone worker, on the same broker and "
        "PostgreSQL server (`src/sensorpipe/proof/peer.py` gives its configuration: JSON with `schema.content`, "
        "the timestamp parsed by `TimestampConverter`, upsert on `(event_id, ts)`, batches of 2,000).",
        "",
        f"Target: at least {PEER_TARGET:g} × the peer's events per CPU-second on the drain, while doing more "
        "(dedupe by `event_id` over the whole window, rollups, sensor statistics, a dead letter for every "
        "failure kind).",
        "",
        f"Each sink drains the same {p.events:,} preloaded events into a fresh database. CPU counts the sink "
        "process, PostgreSQL (server and backends) and the broker from the sink's first stored row to its last; "
        "events/s is over the same span, read from the rows' insert times.",
        "",
        "| sink | events/s | seconds | events per CPU-second | CPU us/event: sink | PostgreSQL | Kafka "
        "| sink peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in p.runs:
        sink, pg, kafka = _by_process(r)
        failed = " (task failed)" if r.failed else ""
        out.append(
            f"| {r.sink}{failed} | {r.events_per_s:,} | {r.seconds} | {r.events_per_cpu_s:,} | {sink} | {pg} "
            f"| {kafka} | {r.peak_rss_mb} MB |"
        )
    best = max(others, key=lambda r: r.events_per_cpu_s, default=None)
    if best is not None and best.events_per_cpu_s:
        ratio = ours.events_per_cpu_s / best.events_per_cpu_s
        out += [
            "",
            f"- ≥ {PEER_TARGET:g} × the peer's events per CPU-second: {mark(ratio >= PEER_TARGET)} "
            f"({ratio:.2f} × its best configuration, {best.sink})",
        ]
        if ratio < PEER_TARGET:
            out += _where_cpu_goes(ours, best, profile)
    return [*out, "", *_rates(p.rates, e2e), *_correctness(p.correctness), *_guarantees()]


def _by_process(r: res.SinkRun) -> tuple[float, float, float]:
    """A drain's CPU us per event: (the sink process, PostgreSQL, the broker)."""
    cpu = dict(r.cpu_us_per_event)
    pg, kafka = cpu.pop("postgres", 0.0), cpu.pop("kafka", 0.0)
    return next(iter(cpu.values()), 0.0), pg, kafka


def _where_cpu_goes(ours: res.SinkRun, best: res.SinkRun, profile: res.Profile | None) -> list[str]:
    """The profile behind a missed ratio: the cost by process, and the consumer's own profile."""
    (sink_ours, pg_ours, _), (sink_peer, pg_peer, _) = _by_process(ours), _by_process(best)
    out = [
        f"- where the CPU goes: the sink process {sink_ours} us per event for sensorpipe against {sink_peer} for "
        f"the peer; PostgreSQL {pg_ours} against {pg_peer}, for the dedupe claim, the rollups and the sensor "
        "statistics sensorpipe writes beside each row (their statements' costs: `docs/decisions/006-write-"
        "statements.md`)"
    ]
    if profile is not None:
        top = ", ".join(f"{k} {v:.0%}" for k, v in sorted(profile.share.items(), key=lambda kv: -kv[1])[:2])
        out.append(f"- the consumer's own wall time (its profile in the consumer section): {top}")
    return out


def _rates(rates: list[res.PeerRate], e2e: res.E2EResult | None) -> list[str]:
    """Both end to end at the same offered rates: ours from the e2e stage, the peer's here."""
    if not rates:
        return []
    out = [
        "End to end at the e2e stage's offered rates (2,000 sensors; latency from event time to the row's "
        "insert; CPU per produced event, all processes: producer, sink, broker, PostgreSQL):",
        "",
        "| rate | sink | produced | stored | p50 ms | p99 ms | CPU us/event | sink peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours = {r.rate: r for r in e2e.rates} if e2e else {}
    for p in rates:
        o = ours.get(p.rate)
        if o is not None:
            cpu = sum(c.cpu_s for c in o.resources.values()) / max(o.produced, 1) * 1e6
            rss = o.resources["consumer"].peak_rss_mb if "consumer" in o.resources else ""
            out.append(
                f"| {p.rate:,}/s | sensorpipe | {o.produced:,} | {o.latency_ms.rows:,} | {o.latency_ms.p50} "
                f"| {o.latency_ms.p99} | {cpu:.1f} | {rss} MB |"
            )
        failed = " (task failed)" if p.failed else ""
        out.append(
            f"| {p.rate:,}/s | Connect + Debezium{failed} | {p.produced:,} | {p.stored:,} | {p.p50_ms} | {p.p99_ms} "
            f"| {sum(p.cpu_us_per_event.values()):.1f} | {p.peak_rss_mb} MB |"
        )
    return [*out, ""]


def _correctness(c: res.Correctness) -> list[str]:
    heads = " | ".join(f"Connect + Debezium ({label})" for label in c.peer_configs)
    out = [
        "What each did with the same duplicates and poison (all read one topic, each into its own database; "
        "`src/sensorpipe/proof/peer_check.py` builds the feed):",
        "",
        f"| fed | messages | sensorpipe | {heads} |",
        "|---|---:|---|" + "---|" * len(c.peer_configs),
    ]
    for o in c.outcomes:
        out.append(f"| {o.case} | {o.fed:,} | {o.ours} | {' | '.join(o.peers)} |")
    for label, failed in zip(c.peer_configs, c.peer_failed, strict=True):
        if failed:
            out += ["", f"The peer's task ({label}) stopped on: " + "; ".join(f"`{e}`" for e in failed)]
    return [*out, ""]


def _guarantees() -> list[str]:
    return [
        "The differences in guarantees behind that table:",
        "",
        "- **Identity.** sensorpipe stores each `event_id` once across the whole retention window and records a "
        "reuse with other content as a conflict; the peer's upsert key is `(event_id, ts)`, so a reused id with "
        "another timestamp is a second row, and one with the same timestamp overwrites the first copy's value.",
        "- **Validation.** sensorpipe checks every field of the contract and dead-letters a violation with its "
        "reason; the peer's dead-letter topic receives only converter and transform errors, so what its schema "
        "cannot see (unknown fields, a negative `seq`, a key that is not the sensor) is stored.",
        "- **A row the database refuses** is dead-lettered by sensorpipe; in the peer it fails the task, and "
        "nothing after it is written until an operator intervenes.",
        "- **Derived data.** sensorpipe writes rollups, sensor statistics and counters in the same transaction "
        "as the rows; the peer writes the rows only.",
        "",
    ]
