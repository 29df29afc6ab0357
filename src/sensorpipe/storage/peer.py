"""SQL of the benchmark's peer: the table the Debezium JDBC sink writes, and what is read
back from it.

The table is the peer's, not sensorpipe's store, so it is created here for each run and not
by a migration: `metrics` as a JDBC sink can write it, partitioned by UTC day, with the
partition key in its primary key `(event_id, ts)`, as PostgreSQL requires of a partitioned
table's unique keys. `ingested_at` is filled by the server as each row is inserted (the
sink never names it), so the drain's span and the latency from event time to a queryable
row are read the same way as from `metrics`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql

TABLE = "peer_metrics"

_CREATE = """
CREATE TABLE {table} (
    ts          timestamptz NOT NULL,
    sensor_id   text        NOT NULL,
    event_id    text        NOT NULL,
    value       float8      NOT NULL,
    seq         bigint      NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (event_id, ts)
) PARTITION BY RANGE (ts)
"""
_PARTITION = "CREATE TABLE {part} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"
# The drain's span (first to last row inserted) and its latency percentiles, in ms.
_SPAN = """
SELECT count(*), extract(epoch FROM max(ingested_at) - min(ingested_at)),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts) * 1000)
FROM {table}
"""
# What a correctness run left: rows and distinct event ids.
_SHAPE = "SELECT count(*), count(DISTINCT event_id) FROM {table}"
_VALUE_OF = "SELECT event_id, value FROM {table} WHERE event_id = ANY(%s) ORDER BY event_id, ts"


def _q(template: str, **names: str) -> sql.Composed:
    return sql.SQL(template).format(**{k: sql.Identifier(v) for k, v in names.items()})


def create_table(dsn: str, first: date, last: date) -> None:
    """The peer's table with a partition for each UTC day from `first` to `last`."""
    with psycopg.connect(dsn) as conn:
        conn.execute(_q(_CREATE, table=TABLE))
        day = first
        while day <= last:
            conn.execute(
                sql.SQL(_PARTITION).format(
                    part=sql.Identifier(f"{TABLE}_{day:%Y%m%d}"),
                    table=sql.Identifier(TABLE),
                    lo=sql.Literal(day.isoformat()),
                    hi=sql.Literal((day + timedelta(days=1)).isoformat()),
                )
            )
            day += timedelta(days=1)
        conn.commit()


def any_row(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute(_q("SELECT 1 FROM {table} LIMIT 1", table=TABLE)).fetchone() is not None


def span(dsn: str) -> tuple[int, float, float | None, float | None]:
    """(rows, seconds from the first row inserted to the last, latency p50 ms, p99 ms)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_q(_SPAN, table=TABLE)).fetchone()
    assert row is not None
    p50, p99 = row[2] if row[2] else (None, None)
    return int(row[0]), float(row[1] or 0.0), p50, p99


def shape(dsn: str) -> tuple[int, int]:
    """(rows, distinct event ids) in the peer's table."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(_q(_SHAPE, table=TABLE)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def values_of(dsn: str, event_ids: list[str]) -> list[tuple[str, float]]:
    """(event_id, value) of every row of `event_ids`, as stored."""
    with psycopg.connect(dsn) as conn:
        return [(r[0], float(r[1])) for r in conn.execute(_q(_VALUE_OF, table=TABLE), (event_ids,))]
