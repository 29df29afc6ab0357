"""SQL of the benchmark: counts, the reference writers (plain COPY, one transaction per event),
latency percentiles, and the bulk load of readings for the API stage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

_STORED = "SELECT coalesce(sum(stored), 0)::bigint FROM ingest_counters"
_REPLAYED = "SELECT coalesce(sum(redeliveries), 0)::bigint FROM ingest_counters"
_ROWS = "SELECT ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset FROM metrics"
_COPY = "COPY metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset) FROM STDIN (FORMAT BINARY)"
_NAIVE_CLAIM = """
INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)
VALUES (%s, %s, %s, 0, %s) ON CONFLICT (event_id) DO NOTHING
"""
_NAIVE_ROW = """
INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
# Event time to the row's insert time inside the batch transaction, which commits right after.
_LATENCY = """
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts) * 1000),
       count(*)
FROM metrics
"""
# What each active statement of one application is doing now: waiting (on a lock, I/O, a
# latch...) or on the CPU (no wait event), and which statement it is, by its first words.
_ACTIVITY = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS statement
FROM pg_stat_activity
WHERE application_name = %s AND state = 'active' AND pid <> pg_backend_pid()
"""
# 10M readings: generate_series in SQL, then rollups and sensor state derived from them.
_LOAD = """
INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)
SELECT now() - interval '24 hours' + (i * (86400.0 / %(rows)s)) * interval '1 second',
       'sensor-' || lpad((i %% %(sensors)s)::text, 5, '0'),
       md5(i::text || %(salt)s),
       20 + 5 * sin(i / 5000.0) + (i %% 97) / 10.0,
       i / %(sensors)s, (i %% 12)::int, i / 12
FROM generate_series(0, %(rows)s - 1) AS g(i)
"""
_LOAD_ROLLUP = """
INSERT INTO metrics_1m (sensor_id, minute, count, sum, min, max)
SELECT sensor_id, date_trunc('minute', ts), count(*), sum(value), min(value), max(value) FROM metrics GROUP BY 1, 2
"""
_LOAD_PARTITION_ROLLUP = """
INSERT INTO metrics_1m_partition (kafka_partition, minute, count, sum, min, max)
SELECT kafka_partition, date_trunc('minute', ts), count(*), sum(value), min(value), max(value)
FROM metrics GROUP BY 1, 2
"""
_LOAD_HOURLY_ROLLUP = """
INSERT INTO metrics_1h_partition (kafka_partition, hour, count, sum, min, max)
SELECT kafka_partition, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
FROM metrics_1m_partition GROUP BY 1, 2
"""
_LOAD_SENSOR_HOURLY = """
INSERT INTO metrics_1h (sensor_id, hour, count, sum, min, max)
SELECT sensor_id, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
FROM metrics_1m GROUP BY 1, 2
"""
_LOAD_STATS = """
INSERT INTO sensor_stats (sensor_id, events, last_value, last_ts, last_seq)
SELECT DISTINCT ON (sensor_id) sensor_id, count(*) OVER (PARTITION BY sensor_id), value, ts, seq
FROM metrics ORDER BY sensor_id, ts DESC
"""
_LOAD_COUNTERS = "INSERT INTO ingest_counters (kafka_partition, stored) SELECT 0, count(*) FROM metrics"


def progress(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    """One connection for polling `stored` or `replayed` many times a second: a connection
    per poll started a server backend each time, about 2% of the server's CPU during a drain
    polled 10 times a second (perf), taken from the consumer being measured."""
    return psycopg.connect(dsn, autocommit=True)


def _one(conn: psycopg.Connection[tuple[Any, ...]], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def stored(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    return _one(conn, _STORED)


def replayed(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    return _one(conn, _REPLAYED)


_DRAIN_SPAN = "SELECT count(*), extract(epoch FROM max(ingested_at) - min(ingested_at)) FROM metrics"
_VALUES_OF = "SELECT event_id, value FROM metrics WHERE event_id = ANY(%s) ORDER BY event_id, ts"
_DEAD_AT = "SELECT kafka_partition, kafka_offset, reason FROM dead_letters"
_DEAD_COUNT = "SELECT count(*) FROM dead_letters"


def drain_span(dsn: str) -> tuple[int, float]:
    """(rows in metrics, seconds from the first inserted to the last)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_DRAIN_SPAN).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0.0)


def values_of(dsn: str, event_ids: list[str]) -> list[tuple[str, float]]:
    """(event_id, value) of every stored row of `event_ids`."""
    with psycopg.connect(dsn) as conn:
        return [(r[0], float(r[1])) for r in conn.execute(_VALUES_OF, (event_ids,))]


def dead_lettered(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    return _one(conn, _DEAD_COUNT)


def dead_letters(dsn: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> reason of every dead letter."""
    with psycopg.connect(dsn) as conn:
        return {(int(p), int(o)): str(r) for p, o, r in conn.execute(_DEAD_AT)}


# The transport floor's table (proof.floor): the rows with one unique key and nothing else.
# A benchmark fixture, not part of the store, so it is created here and not by a migration.
_FLOOR_TABLE = """
CREATE TABLE floor_rows (
    ts timestamptz NOT NULL, sensor_id text NOT NULL, event_id text PRIMARY KEY, value float8 NOT NULL,
    seq bigint NOT NULL
)
"""
_FLOOR_COPY = "COPY floor_rows (ts, sensor_id, event_id, value, seq) FROM STDIN (FORMAT BINARY)"


def create_floor_table(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(_FLOOR_TABLE)


def copy_floor(dsn: str, rows: list[tuple[Any, ...]]) -> None:
    _copy(dsn, _FLOOR_COPY, ["timestamptz", "text", "text", "float8", "int8"], rows)


def _copy(dsn: str, statement: str, types: list[str], rows: list[tuple[Any, ...]]) -> None:
    """A binary COPY of `rows` in one transaction."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        conn.commit()


def rows_of(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(_ROWS).fetchall()


def copy_rows(dsn: str, rows: list[tuple[Any, ...]]) -> None:
    _copy(dsn, _COPY, ["timestamptz", "text", "text", "float8", "int8", "int4", "int8"], rows)


def naive_insert(
    conn: psycopg.Connection[Any],
    event_id: str,
    sensor_id: str,
    ts: datetime,
    value: float,
    seq: int,
    part: int,
    off: int,
) -> None:
    """One event, one transaction: the floor the batch writer is compared with."""
    with conn.transaction():
        cur = conn.execute(_NAIVE_CLAIM, (event_id, part, off, ts))
        if cur.rowcount:
            conn.execute(_NAIVE_ROW, (ts, sensor_id, event_id, value, seq, part, off))


def latency(dsn: str) -> dict[str, float | int | None]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_LATENCY).fetchone()
    if row is None or row[0] is None:
        return {"p50": None, "p95": None, "p99": None, "rows": 0}
    p50, p95, p99 = row[0]
    return {"p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1), "rows": int(row[1])}


def load_readings(dsn: str, rows: int, sensors: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(_LOAD, {"rows": rows, "sensors": sensors, "salt": str(rows)})
        conn.execute(_LOAD_ROLLUP)
        conn.execute(_LOAD_PARTITION_ROLLUP)
        conn.execute(_LOAD_HOURLY_ROLLUP)
        conn.execute(_LOAD_SENSOR_HOURLY)
        conn.execute(_LOAD_STATS)
        conn.execute(_LOAD_COUNTERS)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE metrics")
        conn.execute("VACUUM ANALYZE metrics_1m")
        conn.execute("VACUUM ANALYZE metrics_1m_partition")
        conn.execute("VACUUM ANALYZE metrics_1h_partition")
        conn.execute("VACUUM ANALYZE sensor_stats")
        # Flush the load's writes now, so that the checkpoint they would start does not run
        # during the measurement.
        conn.execute("CHECKPOINT")


# What the console's endpoints read besides readings: 20,000 dead letters spread over the
# loaded 24 h in four reasons, and the dedupe rows of one sensor's events (the event lookup
# reads processed_events first). Idempotent, so a reused load can run it again.
# Numbered from 1: the i-th is at partition i % LOADED_DEAD_PARTITIONS, offset LOADED_DEAD_OFFSET + i.
LOADED_DEAD = 20_000
LOADED_DEAD_PARTITIONS = 12
LOADED_DEAD_OFFSET = 1_000_000_000
_LOAD_DEAD = """
INSERT INTO dead_letters (kafka_partition, kafka_offset, reason, detail, dead_at)
SELECT mod(i, %(modulo)s), %(first)s::bigint + i,
       (ARRAY['malformed_json', 'missing_field', 'wrong_type', 'timestamp_out_of_window'])[mod(i, 4) + 1],
       'loaded for the benchmark', now() - interval '24 hours' + i * (86400.0 / %(n)s) * interval '1 second'
FROM generate_series(1, %(n)s) AS i
ON CONFLICT DO NOTHING
"""
# The loaded dead letters' copies on the dead-letter topic, the i-th at the i-th position given.
_POINT_DEAD = """
UPDATE dead_letters d SET dlq_partition = c.part, dlq_offset = c.off
FROM unnest(%(partitions)s::int[], %(offsets)s::bigint[]) WITH ORDINALITY AS c(part, off, i)
WHERE d.kafka_partition = mod(c.i, %(modulo)s) AND d.kafka_offset = %(first)s::bigint + c.i
"""
_LOAD_LOOKUP = """
INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)
SELECT event_id, kafka_partition, kafka_offset, 0, ts FROM metrics WHERE sensor_id = %(sensor)s
ON CONFLICT DO NOTHING
"""


def load_console_extras(dsn: str, sensor: str) -> str:
    """Loads the dead letters and `sensor`'s dedupe rows; returns one of its event ids."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_LOAD_DEAD, {"n": LOADED_DEAD, "modulo": LOADED_DEAD_PARTITIONS, "first": LOADED_DEAD_OFFSET})
        conn.execute(_LOAD_LOOKUP, {"sensor": sensor})
        conn.execute("VACUUM ANALYZE dead_letters")
        conn.execute("VACUUM ANALYZE processed_events")
        row = conn.execute(
            "SELECT event_id FROM processed_events WHERE event_id IN "
            "(SELECT event_id FROM metrics WHERE sensor_id = %s ORDER BY ts DESC LIMIT 1)",
            (sensor,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no events of {sensor} were loaded")
    return str(row[0])


def point_dead_letters(dsn: str, copies: list[tuple[int, int]]) -> None:
    """Records where the loaded dead letters' copies are on the dead-letter topic: `copies`,
    the (partition, offset) of the first, second... loaded dead letter's copy."""
    params = {
        "partitions": [p for p, _ in copies],
        "offsets": [o for _, o in copies],
        "modulo": LOADED_DEAD_PARTITIONS,
        "first": LOADED_DEAD_OFFSET,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(_POINT_DEAD, params)
        if cur.rowcount != len(copies):
            raise RuntimeError(f"{cur.rowcount} of {len(copies)} loaded dead letters were pointed at their copies")
        conn.execute("VACUUM ANALYZE dead_letters")


def loaded_rows(dsn: str) -> int:
    """Rows in a database left by an earlier run, or 0 when it does not exist."""
    try:
        with psycopg.connect(dsn) as conn:
            return _one(conn, "SELECT count(*) FROM metrics")
    except psycopg.Error:
        return 0


def newest_age_s(dsn: str) -> float:
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT extract(epoch FROM now() - max(ts)) FROM metrics").fetchone()
            return float(row[0]) if row and row[0] is not None else 1e9
    except psycopg.Error:
        return 1e9


# -- bytes at rest (the storage stage) ------------------------------------------------------------
# Heap (with TOAST) and indexes apart, per kind of table. metrics and metrics_1m are the sums of
# their day partitions.
_AT_REST = """
SELECT 'raw rows' AS part, coalesce(sum(pg_table_size(i.inhrelid)), 0)::int8 AS heap,
       coalesce(sum(pg_indexes_size(i.inhrelid)), 0)::int8 AS indexes
FROM pg_inherits i WHERE i.inhparent = 'metrics'::regclass
UNION ALL
SELECT 'dedupe', pg_table_size('processed_events'), pg_indexes_size('processed_events')
UNION ALL
SELECT 'rollups', sum(pg_table_size(r)), sum(pg_indexes_size(r))
FROM (SELECT coalesce(p.relid, t) AS r  -- a plain table has no partition tree: itself
      FROM unnest(ARRAY['metrics_1m', 'metrics_1h', 'metrics_1m_partition', 'metrics_1h_partition']::regclass[]) t
      LEFT JOIN LATERAL pg_partition_tree(t) p ON true) x
UNION ALL
SELECT 'other', sum(pg_table_size(t)), sum(pg_indexes_size(t))
FROM unnest(ARRAY['sensor_stats', 'ingest_counters', 'ignored_deliveries', 'dead_letters',
                  'processed_ranges']::regclass[]) t
"""
# Where a row's bytes go, for the two tables written once per event. A whole-row value's size
# (pg_column_size(t.*)) is its tuple: the 23-byte header padded to 24, then the columns with
# their alignment padding. Each tuple also costs a 4-byte line pointer in its page; what is
# left of the heap's bytes per row is page overhead and free space (fillfactor, dead tuples).
_TUPLES = """
SELECT 'raw rows', count(*), coalesce(avg(pg_column_size(m.*)), 0)::float8 FROM metrics m
UNION ALL
SELECT 'dedupe', count(*), coalesce(avg(pg_column_size(p.*)), 0)::float8 FROM processed_events p
"""
# Average stored width of each column (planner statistics, after ANALYZE; the partitioned
# parent's statistics cover all its partitions).
_COLUMN_WIDTHS = """
SELECT tablename::text, attname::text, avg_width FROM pg_stats
WHERE schemaname = current_schema() AND tablename IN ('metrics', 'processed_events')
  AND inherited = (tablename = 'metrics')
ORDER BY tablename, attname
"""
# Each index of the two tables, summed over its partitions (pg_partition_tree lists nothing for
# the index of a plain table, which is then its own size).
_INDEX_SIZES = """
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,
       coalesce((SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(i.indexrelid) t),
                pg_relation_size(i.indexrelid))::int8
FROM pg_index i WHERE i.indrelid IN ('metrics'::regclass, 'processed_events'::regclass)
ORDER BY 1, 2
"""
_HEAP_OF = {
    "raw rows": "SELECT coalesce(sum(pg_table_size(relid)), 0)::int8 FROM pg_partition_tree('metrics')",
    "dedupe": "SELECT pg_table_size('processed_events')",
}
_WAL_LSN = "SELECT pg_current_wal_lsn()"
_WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::int8"


def bytes_at_rest(dsn: str) -> dict[str, dict[str, int]]:
    """part -> {heap, indexes} in bytes, after a VACUUM ANALYZE (so the visibility and free
    space maps exist, as they do on a store that has run for a while)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        return {str(p): {"heap": int(h), "indexes": int(i)} for p, h, i in conn.execute(_AT_REST).fetchall()}


def row_anatomy(dsn: str) -> dict[str, Any]:
    """Bytes per row of the raw and dedupe tables: the tuple (header and columns), its line
    pointer, the page overhead and free space left, each index, and each column's width.
    Read after `bytes_at_rest` (which vacuums and analyzes)."""
    table = {"raw rows": "metrics", "dedupe": "processed_events"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        tuples = conn.execute(_TUPLES).fetchall()
        widths = conn.execute(_COLUMN_WIDTHS).fetchall()
        indexes = conn.execute(_INDEX_SIZES).fetchall()
        heap = {name: _one_int(conn, sql) for name, sql in _HEAP_OF.items()}
    out: dict[str, Any] = {}
    for name, count, tuple_bytes in tuples:
        rows = max(int(count), 1)
        per_row = heap[name] / rows
        out[str(name)] = {
            "rows": rows,
            "tuple": round(tuple_bytes, 1),
            "line_pointer": 4,
            "page_slack": round(per_row - tuple_bytes - 4, 1),
            "indexes": {idx: round(int(size) / rows, 1) for tbl, idx, size in indexes if tbl == table[name]},
            "columns": {col: int(w) for tbl, col, w in widths if tbl == table[name]},
        }
    return out


def _one_int(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def wal_position(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_WAL_LSN).fetchone()
    return str(row[0]) if row else "0/0"


def wal_since(dsn: str, lsn: str) -> int:
    """WAL bytes written by the whole cluster since `lsn`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_WAL_SINCE, (lsn,)).fetchone()
    return int(row[0]) if row else 0


# The oldest row each retention tier holds (the soak reports how far back each reaches).
_TIER_EDGES = (
    "SELECT (SELECT min(ts) FROM metrics), (SELECT min(minute) FROM metrics_1m), (SELECT min(hour) FROM metrics_1h)"
)


def tier_edges(conn: psycopg.Connection[Any]) -> dict[str, datetime | None]:
    row = conn.execute(_TIER_EDGES).fetchone()
    assert row is not None
    return dict(zip(("raw", "1m", "1h"), row, strict=True))


def activity(conn: psycopg.Connection[Any], application: str) -> list[tuple[str, str]]:
    """(wait, statement) of each of `application`'s statements running now."""
    return [(w, q.strip()) for w, q in conn.execute(_ACTIVITY, (application,)).fetchall()]


# -- the compacted tier (migration 012) ---------------------------------------------------------
# Bytes on disk of the raw-event data of the stored days: rows, their indexes and the dedupe
# table while hot; chunks, the id directory, the emptied raw partitions and what remains of the
# dedupe table once compacted. Rollups are the same in both forms and are left out of both.
_TIER_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(p.relid)) FILTER (WHERE p.parent = 'metrics'), 0)::int8,
       coalesce(sum(pg_total_relation_size(p.relid)) FILTER (WHERE p.parent = 'metrics_chunks'), 0)::int8,
       coalesce(sum(pg_total_relation_size(p.relid)) FILTER (WHERE p.parent = 'chunk_ids'), 0)::int8,
       pg_total_relation_size('processed_events')
FROM (SELECT 'metrics' AS parent, relid FROM sensorpipe_day_partitions('metrics')
      UNION ALL SELECT 'metrics_chunks', relid FROM sensorpipe_day_partitions('metrics_chunks')
      UNION ALL SELECT 'chunk_ids', relid FROM sensorpipe_day_partitions('chunk_ids')) p
"""


def tier_bytes(dsn: str) -> dict[str, int]:
    """{rows, chunks, directory, dedupe}: bytes on disk, after a VACUUM of the tables involved."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM metrics, processed_events, metrics_chunks, chunk_ids")
        row = conn.execute(_TIER_BYTES).fetchone()
    rows, chunks, directory, dedupe = (int(x) for x in row) if row else (0, 0, 0, 0)
    return {"rows": rows, "chunks": chunks, "directory": directory, "dedupe": dedupe}


def settle(dsn: str) -> None:
    """Do now the background work a compaction leaves (vacuuming the emptied dedupe rows, the
    checkpoint its writes would start), so that it does not run during a measurement."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE processed_events")
        conn.execute("VACUUM ANALYZE metrics")
        conn.execute("VACUUM ANALYZE metrics_chunks")
        conn.execute("CHECKPOINT")
