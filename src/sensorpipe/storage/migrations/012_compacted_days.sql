-- 012: compacted days, the second tier of raw readings (docs/decisions/011-compacted-days.md).
--
-- A day that no longer receives writes is rewritten from rows of `metrics` into chunks: one
-- row per sensor and hour holding that hour's readings as compressed columns (storage.chunks).
-- The swap is one transaction (storage.compaction): the chunks appear, the day's rows and its
-- dedupe rows go, and the day is recorded here. Rows that arrive for a compacted day later
-- are stored as rows again (the day's `metrics` partition stays) and compacted into a further
-- part of the same hours. Rollups are not touched.

-- Each compaction of a day is one part: 0 for the day itself, 1, 2, ... for late rows.
-- bucket_bits: the part's id directory has 2^bucket_bits buckets.
CREATE TABLE compacted_days (
    day          date        NOT NULL,
    part         integer     NOT NULL CHECK (part >= 0),
    events       bigint      NOT NULL,
    chunks       integer     NOT NULL,
    bucket_bits  smallint    NOT NULL CHECK (bucket_bits BETWEEN 0 AND 24),
    compacted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (day, part)
);

-- The chunks, in day partitions created by sensorpipe_ensure_chunk_day. chunk_no numbers a
-- day's chunks across its parts; the id directory refers to chunks by it.
CREATE TABLE metrics_chunks (
    sensor_id text        NOT NULL,
    hour      timestamptz NOT NULL,
    part      integer     NOT NULL,
    chunk_no  integer     NOT NULL,
    events    integer     NOT NULL,
    first_ts  timestamptz NOT NULL,
    last_ts   timestamptz NOT NULL,
    data      bytea       NOT NULL,
    PRIMARY KEY (sensor_id, hour, part)
) PARTITION BY RANGE (hour);
-- Reads across all sensors go by hour; the id directory finds a chunk by its number.
CREATE INDEX metrics_chunks_hour ON metrics_chunks (hour);
CREATE INDEX metrics_chunks_no ON metrics_chunks (chunk_no);
-- The data is compressed already: stored out of line without PostgreSQL compressing it again.
ALTER TABLE metrics_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- The id directory of a compacted part: its event ids by hash bucket (the top bucket_bits of
-- XXH3-64 of the id), each bucket holding the next 32 bits of each id's hash, sorted, and the
-- chunk_no that holds the id. GET /api/events/{id} finds a compacted event through it.
CREATE TABLE chunk_ids (
    day    date    NOT NULL,
    part   integer NOT NULL,
    bucket integer NOT NULL,
    hashes bytea   NOT NULL,
    chunks bytea   NOT NULL,
    PRIMARY KEY (day, part, bucket)
) PARTITION BY RANGE (day);
ALTER TABLE chunk_ids ALTER COLUMN hashes SET STORAGE EXTERNAL;
ALTER TABLE chunk_ids ALTER COLUMN chunks SET STORAGE EXTERNAL;

-- The directory keys of the part being compacted, staged in the server so that the compactor
-- holds a few sensor-hours at a time, never a day's ids: emptied at the start of each
-- compaction, read back bucket by bucket. Compactions run one at a time (the partitions' lock).
-- Unlogged: its rows live only inside the compaction's transaction.
CREATE UNLOGGED TABLE compaction_ids (
    bucket   integer NOT NULL,
    key      bigint  NOT NULL,  -- the 32 hash bits after the bucket's, as an unsigned number
    chunk_no integer NOT NULL
);

-- Creates the chunk and directory partitions of one UTC day if they are missing. Called in a
-- transaction of its own before a compaction: creating a partition locks its parent, and
-- readers of the parent must not wait for a whole compaction.
CREATE FUNCTION sensorpipe_ensure_chunk_day(p_day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    chunks text := format('metrics_chunks_%s', to_char(p_day, 'YYYYMMDD'));
    ids    text := format('chunk_ids_%s', to_char(p_day, 'YYYYMMDD'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    IF to_regclass(chunks) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF metrics_chunks FOR VALUES FROM (%L) TO (%L)',
        chunks, p_day::timestamp AT TIME ZONE 'UTC', (p_day + 1)::timestamp AT TIME ZONE 'UTC');
    EXECUTE format('CREATE TABLE %I PARTITION OF chunk_ids FOR VALUES FROM (%L) TO (%L)', ids, p_day, p_day + 1);
    RETURN true;
END;
$$;

-- A raw day is dropped as in 010, with its compacted tier: the chunk and directory partitions
-- and the record of its parts. The rows reported are the day's rows and compacted events.
CREATE OR REPLACE FUNCTION sensorpipe_drop_raw_day(p_day date, p_reason text, p_today date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part   text := format('metrics_%s', to_char(p_day, 'YYYYMMDD'));
    chunks text := format('metrics_chunks_%s', to_char(p_day, 'YYYYMMDD'));
    ids    text := format('chunk_ids_%s', to_char(p_day, 'YYYYMMDD'));
    upto   timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
    n      bigint := 0;
    bytes  bigint := 0;
BEGIN
    IF p_day >= p_today THEN
        RAISE EXCEPTION 'refusing to drop %: only days before today are dropped', p_day;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    IF to_regclass(part) IS NULL AND to_regclass(chunks) IS NULL THEN
        RETURN 0;  -- dropped already (by another consumer), or never written
    END IF;
    LOCK TABLE metrics IN SHARE MODE;
    SELECT coalesce(sum(greatest(c.reltuples, 0)) FILTER (WHERE c.oid = to_regclass(part)), 0)::bigint,
           coalesce(sum(pg_total_relation_size(c.oid)), 0)
    INTO n, bytes
    FROM pg_class c WHERE c.oid IN (to_regclass(part), to_regclass(chunks), to_regclass(ids));
    n := n + coalesce((SELECT sum(events) FROM compacted_days WHERE day = p_day), 0);
    DELETE FROM processed_events WHERE event_ts < upto;
    DELETE FROM compacted_days WHERE day = p_day;
    IF to_regclass(ids) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', ids);
    END IF;
    IF to_regclass(chunks) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', chunks);
    END IF;
    IF to_regclass(part) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', part);
    END IF;
    UPDATE retention_state SET raw_horizon = greatest(coalesce(raw_horizon, upto), upto);
    INSERT INTO retention_log (day, reason, rows, bytes) VALUES (p_day, p_reason, n, bytes);
    RETURN n;
END;
$$;

-- The days before p_before whose `metrics` partition holds rows: never compacted, or with rows
-- that arrived after their compaction.
CREATE FUNCTION sensorpipe_days_with_rows(p_before date) RETURNS SETOF date
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r   record;
    has boolean;
BEGIN
    FOR r IN SELECT p.day, p.relid FROM sensorpipe_day_partitions('metrics'::regclass) p
             WHERE p.day < p_before ORDER BY 1 LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', r.relid::regclass) INTO has;
        IF has THEN
            RETURN NEXT r.day;
        END IF;
    END LOOP;
END;
$$;

-- Opens the compaction of one day, in the caller's transaction: takes the partitions' lock
-- (retention cannot drop the day meanwhile, nor another compactor take it), then locks the
-- day's `metrics` partition against writes until the transaction ends (EXCLUSIVE: readers go
-- on; a writer storing a row of this day waits, then stores it as a row after the swap).
-- Returns the next part of the day and its first chunk number; no row if the day has no
-- partition.
CREATE FUNCTION sensorpipe_begin_compaction(p_day date) RETURNS TABLE (part integer, first_chunk integer)
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass := to_regclass(format('metrics_%s', to_char(p_day, 'YYYYMMDD')));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    IF rel IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', rel);
    RETURN QUERY
    SELECT coalesce((SELECT max(d.part) + 1 FROM compacted_days d WHERE d.day = p_day), 0),
           coalesce((SELECT max(c.chunk_no) + 1 FROM metrics_chunks c
                     WHERE c.hour >= p_day::timestamp AT TIME ZONE 'UTC'
                       AND c.hour < (p_day + 1)::timestamp AT TIME ZONE 'UTC'), 0);
END;
$$;

-- Closes the compaction of a day whose chunks the caller has written in this transaction:
-- the day's rows and their dedupe rows go, and the part is recorded. The rows deleted are
-- exactly those the caller read: the partition has been locked against writes since.
CREATE FUNCTION sensorpipe_finish_compaction(
    p_day date, p_part integer, p_events bigint, p_chunks integer, p_bucket_bits smallint
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
    n  bigint;
BEGIN
    DELETE FROM processed_events WHERE event_ts >= lo AND event_ts < hi;
    DELETE FROM metrics WHERE ts >= lo AND ts < hi;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> p_events THEN
        RAISE EXCEPTION 'compaction of % read % rows but would delete %', p_day, p_events, n;
    END IF;
    INSERT INTO compacted_days (day, part, events, chunks, bucket_bits)
    VALUES (p_day, p_part, p_events, p_chunks, p_bucket_bits);
    RETURN n;
END;
$$;
