"""The consumer's write path: one PostgreSQL transaction per batch, one statement for the rows.

Contract of `BatchWriter.write`: when it returns, the batch is committed (durably:
synchronous_commit=on) and the caller may commit the Kafka offsets; when it raises, nothing
of the batch is committed and the caller must not move any offset.

Idempotency comes from `processed_events.event_id` (PRIMARY KEY) and ON CONFLICT DO NOTHING:
only rows newly inserted there are written to `metrics`, `metrics_1m` and `sensor_stats`.
Every row of the batch is classified, in the same transaction, as new, duplicate (already
stored, from another offset), redelivery (same offset again) or conflict (same id, other
content), and the per-partition counters are bumped accordingly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from sensorpipe.storage import compacted, rollups
from sensorpipe.storage.arrays import BinaryArray
from sensorpipe.storage.batch import BatchResult, Columns, DeadLetter, Literals, Others
from sensorpipe.storage.positions import Positions
from sensorpipe.storage.positions import record as record_positions

# How the consumer's sessions show in pg_stat_activity (operators and the chaos suite find
# its backends by this name).
APPLICATION_NAME = "sensorpipe-consumer"

# Columns travel as one array parameter each and are unnested server-side: a batch costs two
# statements, never one per row.
#
# No array is sent as a Python list: psycopg adapts a list element by element in Python.
# (docs/decisions/006-write-statements.md has the measurements behind each choice here.)
# - Numbers and times go in PostgreSQL's binary array format, built by numpy in one pass
#   (`BinaryArray`), which the server copies instead of parsing text.
# - Ids go as a text literal built with str.join (`_texts`). This is safe because the contract
#   forbids an id to contain `"` or `\` (see contracts.events), and every element is quoted,
#   so none reads as NULL.
#
# Statement 1 claims the batch's event ids in processed_events. Normally every id is new, the
# insert's row count says so, and nothing else is asked. Otherwise `_KNOWN` says which ids were
# already there: a copy read again from the position it was stored from (a redelivery, and
# every row of a replay) comes back only as a count and a list of positions per partition; any
# other (a duplicate or conflict candidate) as a row with what was stored for it.
# The claim is the same for every batch, whatever came before it:
# - first a plain INSERT inside a savepoint. ON CONFLICT would make the server probe the index
#   once more per row before inserting it (a speculative insertion); a batch of only new ids,
#   the normal case, is claimed by this one statement;
# - if an id is stored already the insert fails whole (unique_violation) at that row, and the
#   savepoint undoes it. Then `_KNOWN` looks the batch's ids up (one index probe per id: a
#   replay, whose ids are all known, costs no more), and INSERT ... ON CONFLICT DO NOTHING
#   claims only the rest. If that claims fewer than it was given, a concurrent writer
#   committed one of them after the lookup, and `_KNOWN` is asked once more for those.
# Statement 2 writes only the rows that were new: metrics, plus rollups, sensor statistics
# and counters pre-aggregated here (`aggregate`), so the server does no sorting or grouping.
# Statement 3 runs only when something was not new: it classifies those rows as duplicates,
# redeliveries or conflicts.
#
# The claim is not one INSERT ... RETURNING joined against the batch: materialising the batch
# and the returned ids for that join costs the server more than the second statement saves.
# The claim, the metrics insert and the per-minute rollup unnest their arrays in the select
# list, not in FROM: a set-returning
# function in FROM is a Function Scan, which first copies its whole result into a tuplestore,
# and the metrics insert then sorted it by ordinality to keep Kafka order. In the select list
# (a ProjectSet node) the rows stream straight into the insert, and the order is the one the
# documentation gives for several set-returning functions in a select list: a row from each
# function's first result, then from each one's second, and so on; unnest reads an array out
# in storage order. So metrics.ingest_id still follows the batch's order (the writer test of
# ingest order holds it).
_INSERT_IDS = """
INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)
SELECT unnest(%(event_id)s::text[]), unnest(%(kpart)s::int4[]), unnest(%(koff)s::int8[]), unnest(%(chash)s::int8[]),
       unnest(%(ts)s::timestamptz[])
"""
_CLAIM = _INSERT_IDS + "ON CONFLICT (event_id) DO NOTHING\n"

# The batch's ids that are in processed_events and were not claimed by this transaction (its
# own rows carry its xid as xmin; processed_events rows are never updated), with what was
# stored for them. After the claim, `missing` is true: an id neither claimed nor found (its
# row deleted meanwhile by retention) then comes back too, with NULL stored values, and
# counts as a duplicate: it is never written to metrics without its processed_events row.
# Before a claim (a replay), `missing` is false and the ids not found are claimed next. An id
# that a concurrent writer claimed is seen once that writer has committed: the claim's
# conflict check waited for it, and each statement takes a new snapshot.
# Each id is looked up through the primary key (the LATERAL subquery with LIMIT is not pulled
# up, so the plan is a nested loop of index probes whatever the planner estimates). A plain
# join lets a custom plan, which sees the batch's 20,000 ids, hash the whole of
# processed_events instead: a sequential scan that grows with the dedupe window. psycopg
# forgets its prepared statements at every ROLLBACK, a failed claim's included, so custom
# plans are what a batch after a duplicate gets.
_KNOWN = """
WITH x AS (
    SELECT u.ord - 1 AS pos, u.kpart, p.kafka_partition AS spart, p.kafka_offset AS soff, p.content_hash AS shash,
           p.kafka_partition = u.kpart AND p.kafka_offset = u.koff AND p.content_hash = u.chash AS again
    FROM unnest(%(event_id)s::text[], %(kpart)s::int4[], %(koff)s::int8[], %(chash)s::int8[])
         WITH ORDINALITY AS u(event_id, kpart, koff, chash, ord)
    LEFT JOIN LATERAL (
        SELECT p.event_id, p.kafka_partition, p.kafka_offset, p.content_hash, p.xmin
        FROM processed_events p WHERE p.event_id = u.event_id LIMIT 1
    ) p ON true
    WHERE CASE WHEN p.event_id IS NULL THEN %(missing)s ELSE p.xmin <> pg_current_xact_id()::xid END
)
SELECT true AS again, kpart, count(*)::int8 AS n, string_agg(pos::text, ',') AS positions,
       NULL::int4 AS spart, NULL::int8 AS soff, NULL::int8 AS shash
FROM x WHERE again GROUP BY kpart
UNION ALL
SELECT false, kpart, 1, pos::text, spart, soff, shash FROM x WHERE again IS NOT TRUE
"""

# The rollups only grow: a batch adds its new rows' count, sum, min and max to the rows of
# their minute and hour, and nothing else ever changes a rollup row but retention deleting
# whole days. Duplicates, redeliveries and conflicts never reach this statement (they were
# not claimed). The API's cache of rendered hours relies on it: an hour whose (rows, events)
# are unchanged holds the same values (api/hours.py). The writer tests hold the rule.
_WRITE_NEW = """
WITH m AS (
    INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)
    SELECT unnest(%(ts)s::timestamptz[]), unnest(%(sensor_id)s::text[]), unnest(%(event_id)s::text[]),
           unnest(%(value)s::float8[]), unnest(%(seq)s::int8[]), unnest(%(kpart)s::int4[]), unnest(%(koff)s::int8[])
),
r AS (
    INSERT INTO metrics_1m AS t (sensor_id, minute, count, sum, min, max)
    SELECT unnest(%(r_sensor)s::text[]), unnest(%(r_minute)s::timestamptz[]), unnest(%(r_count)s::int8[]),
           unnest(%(r_sum)s::float8[]), unnest(%(r_min)s::float8[]), unnest(%(r_max)s::float8[])
    ON CONFLICT (sensor_id, minute) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min), max = greatest(t.max, excluded.max)
),
rh AS (                         -- the same per sensor and hour, kept longer (migration 009)
    INSERT INTO metrics_1h AS t (sensor_id, hour, count, sum, min, max)
    SELECT sensor_id, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
    FROM unnest(%(r_sensor)s::text[], %(r_minute)s::timestamptz[], %(r_count)s::int8[], %(r_sum)s::float8[],
                %(r_min)s::float8[], %(r_max)s::float8[]) AS u(sensor_id, minute, count, sum, min, max)
    GROUP BY 1, 2
    ON CONFLICT (sensor_id, hour) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min), max = greatest(t.max, excluded.max)
),
rp AS (                         -- the all-sensor rollup, per partition (migration 002)
    INSERT INTO metrics_1m_partition AS t (kafka_partition, minute, count, sum, min, max)
    SELECT kpart, minute, count, sum, min, max
    FROM unnest(%(p_part)s::int4[], %(p_minute)s::timestamptz[], %(p_count)s::int8[], %(p_sum)s::float8[],
                %(p_min)s::float8[], %(p_max)s::float8[]) AS u(kpart, minute, count, sum, min, max)
    ON CONFLICT (minute, kafka_partition) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min), max = greatest(t.max, excluded.max)
),
rph AS (                        -- the same per hour, for summaries of whole hours (migration 006)
    INSERT INTO metrics_1h_partition AS t (kafka_partition, hour, count, sum, min, max)
    SELECT kpart, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
    FROM unnest(%(p_part)s::int4[], %(p_minute)s::timestamptz[], %(p_count)s::int8[], %(p_sum)s::float8[],
                %(p_min)s::float8[], %(p_max)s::float8[]) AS u(kpart, minute, count, sum, min, max)
    GROUP BY 1, 2
    ON CONFLICT (hour, kafka_partition) DO UPDATE SET
        count = t.count + excluded.count, sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min), max = greatest(t.max, excluded.max)
),
sst AS (                        -- the batch's first seq of a sensor is checked against its stored last seq
    INSERT INTO sensor_stats AS t (sensor_id, events, last_value, last_ts, last_seq, seq_gaps, order_violations)
    SELECT u.sensor_id, u.n, u.last_value, u.last_ts,
           u.last_seq,
           u.gaps + CASE WHEN prev.last_seq IS NOT NULL AND u.first_seq > prev.last_seq + 1 THEN 1 ELSE 0 END,
           u.violations + CASE WHEN prev.last_seq IS NOT NULL AND u.first_seq <= prev.last_seq THEN 1 ELSE 0 END
    FROM unnest(%(s_sensor)s::text[], %(s_n)s::int8[], %(s_first)s::int8[], %(s_last)s::int8[],
                %(s_value)s::float8[], %(s_ts)s::timestamptz[], %(s_gaps)s::int8[], %(s_viol)s::int8[])
         AS u(sensor_id, n, first_seq, last_seq, last_value, last_ts, gaps, violations)
    LEFT JOIN sensor_stats prev USING (sensor_id)
    ON CONFLICT (sensor_id) DO UPDATE SET
        events = t.events + excluded.events, last_value = excluded.last_value, last_ts = excluded.last_ts,
        last_seq = excluded.last_seq, seq_gaps = t.seq_gaps + excluded.seq_gaps,
        order_violations = t.order_violations + excluded.order_violations, updated_at = clock_timestamp()
)
INSERT INTO ingest_counters AS t (kafka_partition, stored)
SELECT * FROM unnest(%(c_part)s::int4[], %(c_stored)s::int8[])
ON CONFLICT (kafka_partition) DO UPDATE SET stored = t.stored + excluded.stored, updated_at = clock_timestamp()
"""

# Copies that were not new. Duplicates and conflicts are recorded once per Kafka position in
# ignored_deliveries (migration 003), and counted only when that insert is new: a batch
# redelivered after a crash does not count them twice: a copy read again from its own
# position is a redelivery, like a stored row read again from its own position. Redeliveries
# are counted every time they happen. Returns the (duplicates, conflicts, redeliveries) counted.
_WRITE_OTHERS = """
WITH x AS (
    SELECT * FROM unnest(%(o_event)s::text[], %(o_part)s::int4[], %(o_off)s::int8[], %(o_kind)s::text[],
                         %(o_hash)s::int8[], %(o_stored)s::int8[])
        AS u(event_id, kpart, koff, kind, chash, stored_hash)
), n AS (
    INSERT INTO ignored_deliveries (kafka_partition, kafka_offset, event_id, kind)
    SELECT kpart, koff, event_id, kind FROM x
    ON CONFLICT (kafka_partition, kafka_offset) DO NOTHING
    RETURNING kafka_partition, kafka_offset, kind
), c AS (
    INSERT INTO event_conflicts (event_id, kafka_partition, kafka_offset, content_hash, stored_hash)
    SELECT x.event_id, x.kpart, x.koff, x.chash, x.stored_hash
    FROM x JOIN n ON n.kafka_partition = x.kpart AND n.kafka_offset = x.koff
    WHERE n.kind = 'conflict'
), agg AS (
    SELECT kpart, sum(d)::int8 AS d, sum(r)::int8 AS r, sum(cf)::int8 AS cf FROM (
        SELECT kafka_partition AS kpart, (kind = 'duplicate')::int AS d, 0 AS r, (kind = 'conflict')::int AS cf
        FROM n
        UNION ALL
        SELECT kpart, 0, r, 0 FROM unnest(%(r_part)s::int4[], %(r_n)s::int4[]) AS u(kpart, r)
        UNION ALL  -- an ignored copy read again from its own position is a redelivery too
        SELECT x.kpart, 0, 1, 0 FROM x
        WHERE NOT EXISTS (SELECT 1 FROM n WHERE n.kafka_partition = x.kpart AND n.kafka_offset = x.koff)
    ) s GROUP BY kpart
), up AS (
    INSERT INTO ingest_counters AS t (kafka_partition, duplicates, redeliveries, conflicts)
    SELECT kpart, d, r, cf FROM agg
    ON CONFLICT (kafka_partition) DO UPDATE SET
        duplicates = t.duplicates + excluded.duplicates, redeliveries = t.redeliveries + excluded.redeliveries,
        conflicts = t.conflicts + excluded.conflicts, updated_at = clock_timestamp()
)
SELECT coalesce(sum(d), 0)::int8, coalesce(sum(cf), 0)::int8, coalesce(sum(r), 0)::int8 FROM agg
"""

_WRITE_DEAD = """
INSERT INTO dead_letters (kafka_partition, kafka_offset, reason, detail, poison_label, dlq_partition, dlq_offset)
SELECT * FROM unnest(%s::int4[], %s::int8[], %s::text[], %s::text[], %s::text[], %s::int4[], %s::int8[])
ON CONFLICT (kafka_partition, kafka_offset) DO NOTHING
"""

# Claims this transaction made for ids found in the compacted tier: they are not new.
_UNCLAIM = "DELETE FROM processed_events WHERE event_id = ANY(%s::text[])"

_ENSURE_PARTITIONS = "SELECT sensorpipe_ensure_metrics_partitions(%s, %s)"
_RETENTION = "SELECT sensorpipe_apply_tiered_retention(%s, %s, %s, %s)"


def _day_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 86_400_000_000


def utc_day(ts_us: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)).date()


def silence_limits(timeout_ms: int) -> dict[str, int]:
    """libpq's TCP settings under which a connection that goes silent (a partition, a dead
    host) raises within about `timeout_ms`, instead of waiting for the kernel's retransmissions
    (many minutes): unacknowledged data times out, and an idle wait for an answer is probed."""
    probe_s = max(1, timeout_ms // 3000)
    return {
        "tcp_user_timeout": timeout_ms,
        "keepalives": 1,
        "keepalives_idle": probe_s,
        "keepalives_interval": probe_s,
        "keepalives_count": 2,
    }


class BatchWriter:
    """Owns one connection; reconnects lazily after an error."""

    def __init__(
        self,
        dsn: str,
        retention_days: int,
        idle_tx_timeout_ms: int = 30_000,
        rollup_days: tuple[int, int] = (90, 730),
        net_timeout_ms: int = 15_000,
    ) -> None:
        self.dsn = dsn
        self.net_timeout_ms = net_timeout_ms
        self.retention_days = retention_days
        self.rollup_days = rollup_days  # (1-minute, 1-hour) rollups
        self.idle_tx_timeout_ms = idle_tx_timeout_ms
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._known_days: set[date] = set()
        # The current UTC day by the consumer's clock, from the last `maintain`; rows before it
        # are checked against the compacted tier (all rows, until it is known).
        self._today: date | None = None

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                make_conninfo(self.dsn, **silence_limits(self.net_timeout_ms)),
                connect_timeout=5,
                prepare_threshold=0,
                application_name=APPLICATION_NAME,
            )
            BinaryArray.adapt(self._conn)
            self._conn.execute("SET synchronous_commit = on")
            # A consumer frozen mid-transaction (SIGSTOP, a GC pause, a hung host) would hold its
            # claimed event ids' row locks and block the partitions' new owner; the server ends
            # such a transaction instead, and the frozen consumer's batch is rolled back.
            self._conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)", (str(self.idle_tx_timeout_ms),)
            )
            self._conn.commit()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def reset(self) -> None:
        """Drop the connection after an error; the next call reconnects."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def ensure_partitions(self, first: date, last: date) -> int:
        conn = self._connection()
        with conn.transaction():
            row = conn.execute(_ENSURE_PARTITIONS, (first, last)).fetchone()
        day = first
        while day <= last:
            self._known_days.add(day)
            day += timedelta(days=1)
        return int(row[0]) if row else 0

    def maintain(self, today: date) -> tuple[int, int]:
        """Create the coming days' partitions and apply retention. Returns (created, dropped)."""
        self._today = today
        created = self.ensure_partitions(today - timedelta(days=self.retention_days), today + timedelta(days=3))
        conn = self._connection()
        with conn.transaction():
            row = conn.execute(_RETENTION, (today, self.retention_days, *self.rollup_days)).fetchone()
        self._known_days = {d for d in self._known_days if d >= today - timedelta(days=self.retention_days)}
        return created, int(row[0]) if row else 0

    def write(
        self,
        cols: Columns,
        dead: list[DeadLetter],
        slowdown_ms: int = 0,
        before_commit: Callable[[], None] | None = None,
        positions: Positions | None = None,
    ) -> BatchResult:
        """Write one part of a batch in one transaction: its rows, its dead letters and, if
        given, the Kafka positions it read (its known positions count as redeliveries)."""
        seen, later = _first_copies(cols.event_id)
        cand = cols if not later else cols.take(sorted(seen.values()))
        if cand.ts_us:
            first, last = utc_day(min(cand.ts_us)), utc_day(max(cand.ts_us))
            if first not in self._known_days or last not in self._known_days:
                self.ensure_partitions(first, last)
        conn = self._connection()
        stored = 0
        others = Others()
        with conn.transaction():
            if slowdown_ms > 0:
                conn.execute("SELECT pg_sleep(%s)", (slowdown_ms / 1000,))
            if len(cols):
                stored = self._write_rows(conn, cand, others)
                for i in later:  # later copies within the batch: compared with the first copy
                    j = seen[cols.event_id[i]]
                    others.classify(cols, i, (cols.kpart[j], cols.koff[j], cols.chash[j]))
            if positions is not None:
                for part, k in positions.known.items():
                    others.redelivered[part] = others.redelivered.get(part, 0) + k
            duplicates, conflicts, redeliveries = _write_others(conn, others)
            _write_dead(conn, dead)
            if positions is not None:
                record_positions(conn, positions)
            if before_commit is not None:
                before_commit()  # still inside the transaction (the chaos suite's failpoint)
        return BatchResult(stored, duplicates, redeliveries, conflicts, len(dead))

    def _write_rows(self, conn: psycopg.Connection[tuple[Any, ...]], cand: Columns, others: Others) -> int:
        """Claim the candidates' ids and write the rows that were new; returns how many."""
        new, lit = self._claim(conn, cand, others)
        if new.event_id and (self._today is None or min(new.ts_us) < _day_us(self._today)):
            new, lit = self._against_chunks(conn, new, lit, others)
        if not new.event_id:
            return 0
        conn.execute(_WRITE_NEW, {**lit.metrics(), **rollups.params(new)})
        return len(new)

    def _claim(
        self, conn: psycopg.Connection[tuple[Any, ...]], cand: Columns, others: Others
    ) -> tuple[Columns, Literals]:
        """Claim `cand`'s ids in processed_events; the rows that were new, with their literals.
        The rest are classified into `others`."""
        lit = Literals(cand)
        try:
            with conn.transaction():  # a savepoint: a failed insert leaves nothing behind
                conn.execute(_INSERT_IDS, {**lit.claim(), "ts": lit.ts})
            return cand, lit  # every id was new
        except psycopg.errors.UniqueViolation:
            pass  # an id is stored already (or was claimed by a writer that has committed)
        known = conn.execute(_KNOWN, {**lit.claim(), "missing": False}).fetchall()
        if known:
            cand = self._not_claimed(cand, known, others)
            lit = Literals(cand)
        if cand.event_id:
            claimed = conn.execute(_CLAIM, {**lit.claim(), "ts": lit.ts}).rowcount
            if claimed < len(cand):  # a concurrent writer committed some of them after the lookup
                # Rows this statement inserted carry the transaction's own xid (the savepoint
                # above is gone), which is what _KNOWN excludes.
                known = conn.execute(_KNOWN, {**lit.claim(), "missing": True}).fetchall()
                cand = self._not_claimed(cand, known, others)
                lit = Literals(cand)
        return cand, lit

    def _against_chunks(
        self, conn: psycopg.Connection[tuple[Any, ...]], new: Columns, lit: Literals, others: Others
    ) -> tuple[Columns, Literals]:
        """The claimed rows that are not in the compacted tier. A row of a day before the
        writer's current day may belong to a compacted day, whose ids are no longer in
        processed_events: it is looked up in the chunk of its sensor and hour. This runs after
        the claim, so a compaction that deleted the day's dedupe rows meanwhile has committed
        its chunks before this statement's snapshot (the claim waited for it)."""
        cut = _day_us(self._today) if self._today is not None else None
        late = [i for i, t in enumerate(new.ts_us) if cut is None or t < cut]
        found = compacted.known(
            conn, [new.sensor_id[i] for i in late], [new.ts_us[i] for i in late], [new.event_id[i] for i in late]
        )
        hit = [i for i in late if new.event_id[i] in found]
        if not hit:
            return new, lit
        for i in hit:
            s = found[new.event_id[i]]
            others.classify(new, i, (s.kafka_partition, s.kafka_offset, s.content_hash))
        conn.execute(_UNCLAIM, ([new.event_id[i] for i in hit],))
        gone = set(hit)
        new = new.take([i for i in range(len(new)) if i not in gone])
        return new, Literals(new)

    @staticmethod
    def _not_claimed(cand: Columns, claimed: list[tuple[Any, ...]], others: Others) -> Columns:
        """The candidates that were new, given _KNOWN's rows for those that were not: per
        partition, the count and positions of redeliveries; one row for each other one, with
        its stored (partition, offset, hash), NULL for an id a concurrent writer claimed."""
        redelivered = others.redelivered
        again: list[str] = []
        other: list[tuple[int, Any, Any, Any]] = []  # position, stored (partition, offset, hash)
        seen = 0
        for is_again, part, n, positions, spart, soff, shash in claimed:
            seen += n
            if is_again:
                redelivered[part] = redelivered.get(part, 0) + n
                again.append(positions)
            else:
                other.append((int(positions), spart, soff, shash))
        for i, spart, soff, shash in sorted(other):
            others.classify(cand, i, None if spart is None else (spart, soff, shash))
        if seen == len(cand):  # a pure replay: nothing is new, and no position is parsed
            return Columns()
        taken = {int(i) for i in ",".join(again).split(",")} if again else set()
        taken.update(o[0] for o in other)
        return cand.take([i for i in range(len(cand)) if i not in taken])


def _first_copies(event_ids: list[str]) -> tuple[dict[str, int], list[int]]:
    """The first copy of each event id in a batch (id -> index) and the indexes of later
    copies, which are duplicates (or conflicts) of it and are classified in Python. Normally
    every id is distinct, and this costs one set."""
    if len(set(event_ids)) == len(event_ids):
        return {}, []
    seen: dict[str, int] = {}
    later: list[int] = []
    for i, eid in enumerate(event_ids):
        if eid in seen:
            later.append(i)
        else:
            seen[eid] = i
    return seen, later


def _write_others(conn: psycopg.Connection[tuple[Any, ...]], others: Others) -> tuple[int, int, int]:
    """Count the copies that were not stored; (duplicates, conflicts, redeliveries)."""
    if not others.any():
        return 0, 0, 0
    counted = conn.execute(_WRITE_OTHERS, others.params()).fetchone()
    return (0, 0, 0) if counted is None else (int(counted[0]), int(counted[1]), int(counted[2]))


def _write_dead(conn: psycopg.Connection[tuple[Any, ...]], dead: list[DeadLetter]) -> None:
    if dead:
        conn.execute(
            _WRITE_DEAD,
            (
                [d.kafka_partition for d in dead],
                [d.kafka_offset for d in dead],
                [d.reason for d in dead],
                [d.detail for d in dead],
                [d.poison_label for d in dead],
                [d.dlq_partition for d in dead],
                [d.dlq_offset for d in dead],
            ),
        )
