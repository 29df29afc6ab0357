"""`sensorpipe bench storage`: bytes per event at rest, by component, and the producer's codec.

The same preload (2,000 sensors, unthrottled) is written once per codec: none, lz4 and zstd.
For each, the stage measures the Kafka log's bytes per event on disk and the CPU that the
producer, the broker and the consumer spent per event (the consumer drains the topic into a
fresh database). The database of the last drain gives PostgreSQL's bytes per event at rest by
part (raw rows, dedupe, rollups, indexes) and the WAL written per event. Then that database's
days are compacted (storage.compaction, as the compactor does a closed day; the drain is over,
so no writer is active) and the raw-event data is measured again on disk, with the speed and
CPU of the compaction.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg

from sensorpipe.proof import results as res
from sensorpipe.proof.measure import ProcStats, platform_pids
from sensorpipe.storage import bench as bq
from sensorpipe.storage import compaction

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

CODECS = ("none", "lz4", "zstd")

# Published figures for comparison, quoted as their sources give them (not measured here).
REFERENCES: list[tuple[str, str]] = [
    (
        "Facebook Gorilla: 1.37 bytes per (timestamp, value) point",
        "Pelkonen et al., Gorilla: A Fast, Scalable, In-Memory Time Series Database, VLDB 2015",
    ),
    (
        "Prometheus TSDB: about 1-2 bytes per sample",
        "Prometheus documentation, Storage: operational aspects",
    ),
    (
        "TimescaleDB native compression: typically 90% or more smaller than row storage",
        "Timescale documentation, Compression",
    ),
]


def storage_stage(b: Bench) -> res.StorageResult:
    n = 200_000 if b.quick else 1_000_000
    pids = platform_pids(b.state_dir)
    codecs: list[res.Codec] = []
    dsn = ""
    for codec in CODECS:
        broker = ProcStats(pids["kafka"]).start()
        k, produced = b.preload(n, f"store_{codec}", SENSORPIPE_PRODUCER_COMPRESSION=codec)
        broker_in = broker.stop()
        events = b.high_watermark(k)
        log_bytes = b.topic_bytes(k)
        dsn = b.database(f"store_{codec}")
        lsn = bq.wal_position(dsn)
        broker = ProcStats(pids["kafka"]).start()
        drained = b.drain(k, dsn, 1, events, bq.stored)
        broker_out = broker.stop()
        wal = bq.wal_since(dsn, lsn)
        per = 1e6 / events
        codecs.append(
            res.Codec(
                codec=codec,
                events=events,
                kafka_bytes_per_event=round(log_bytes / events, 1),
                producer_us_per_event=round(produced.cpu_s * per, 2),
                broker_us_per_event=round((broker_in.cpu_s + broker_out.cpu_s) * per, 2),
                consumer_us_per_event=round(drained.cpu_s * per, 2),
                consumer_events_per_s=drained.events_per_s,
                consumer_peak_rss_mb=drained.peak_rss_mb,
                wal_bytes_per_event=round(wal / events, 1),
            )
        )
    parts = bq.bytes_at_rest(dsn)
    stored = codecs[-1].events
    return res.StorageResult(
        events=n,
        codecs=codecs,
        references=REFERENCES,
        anatomy={name: res.Anatomy(**a) for name, a in bq.row_anatomy(dsn).items()},
        postgres={
            name: res.Bytes(heap=round(v["heap"] / stored, 1), indexes=round(v["indexes"] / stored, 1))
            for name, v in parts.items()
        },
        postgres_bytes_per_event=round(sum(v["heap"] + v["indexes"] for v in parts.values()) / stored, 1),
        compaction=compact_stage(dsn, pids["postgres"], stored),
    )


def compact_stage(dsn: str, postgres_pid: int, stored: int) -> res.Compaction:
    """Compact every day of the drained database, timed alone, and weigh both forms."""
    hot = bq.tier_bytes(dsn)
    pg = ProcStats(postgres_pid, children=True).start()
    cpu, t0 = time.process_time(), time.perf_counter()
    done: list[compaction.Compacted] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for day in compaction.pending_days(conn, datetime.now(UTC).date() + timedelta(days=2)):
            result = compaction.compact(conn, day)
            if result is not None:
                done.append(result)
    seconds = time.perf_counter() - t0
    ours = time.process_time() - cpu
    pg_cpu = pg.stop().cpu_s
    cold = bq.tier_bytes(dsn)
    events = sum(d.events for d in done)
    assert events == stored, f"compacted {events} events of {stored}"
    return res.Compaction(
        events=events,
        chunks=sum(d.chunks for d in done),
        seconds=round(seconds, 2),
        events_per_s=round(events / seconds),
        cpu_us_per_event={"compactor": round(ours * 1e6 / events, 2), "postgres": round(pg_cpu * 1e6 / events, 2)},
        events_per_cpu_s=round(events / (ours + pg_cpu)),
        hot_bytes=hot,
        compacted_bytes=cold,
        hot_bytes_per_event=round((hot["rows"] + hot["dedupe"]) / events, 1),
        # The dedupe table's emptied space is not the compacted days': the hot days' rows reuse it.
        compacted_bytes_per_event=round((cold["chunks"] + cold["directory"] + cold["rows"]) / events, 1),
        encoded_bytes_per_event=round(sum(d.bytes for d in done) / events, 1),
    )
