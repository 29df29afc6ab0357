-- 010: the 1-minute rollups in day partitions, as the raw rows are.
--
-- Deleting a day of rollup rows leaves their file as large as before (later rows reuse the
-- space; the file never shrinks), so neither retention could give back what the 1-minute
-- tier takes on disk: a store whose rollups outgrew its share stayed over it once no raw day
-- before today was left, and the consumer paused for good. A day partition leaves the disk
-- when it is dropped. Time retention drops the days past the tier's cutoff; size retention,
-- once no raw day before today is left, drops the oldest 1-minute day before today. Either
-- moves the minute horizon, before which reads are served by the hourly tier.

ALTER TABLE metrics_1m RENAME TO metrics_1m_flat;
ALTER TABLE metrics_1m_flat RENAME CONSTRAINT metrics_1m_pkey TO metrics_1m_flat_pkey;
ALTER INDEX metrics_1m_minute RENAME TO metrics_1m_flat_minute;
-- its retention target row names the table by oid: it goes before the table does
DELETE FROM retention_targets WHERE table_name = 'metrics_1m_flat'::regclass;

CREATE TABLE metrics_1m (
    sensor_id text             NOT NULL,
    minute    timestamptz      NOT NULL,
    count     bigint           NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    CONSTRAINT metrics_1m_pkey PRIMARY KEY (sensor_id, minute) INCLUDE (count, sum, min, max)
) PARTITION BY RANGE (minute);
CREATE INDEX metrics_1m_minute ON metrics_1m (minute);

ALTER TABLE retention_state ADD COLUMN minute_horizon timestamptz;
ALTER TABLE retention_log ADD COLUMN tier text NOT NULL DEFAULT 'raw' CHECK (tier IN ('raw', '1m'));

-- Creates the 1-minute partition of one UTC day if it is missing. Each day's partition has
-- room for HOT updates: a batch updates its current minutes again and again.
CREATE FUNCTION sensorpipe_ensure_minute_day(p_day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('metrics_1m_%s', to_char(p_day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF metrics_1m FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 70)',
        part, p_day::timestamp AT TIME ZONE 'UTC', (p_day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
END;
$$;

-- Every day with rollup rows or a raw partition gets its 1-minute partition; then the rows move.
SELECT sensorpipe_ensure_minute_day(d)
FROM (
    SELECT DISTINCT (minute AT TIME ZONE 'UTC')::date AS d FROM metrics_1m_flat
    UNION
    SELECT to_date(substr(c.relname, 9), 'YYYYMMDD')
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'metrics'::regclass AND c.relname ~ '^metrics_[0-9]{8}$'
) days;
INSERT INTO metrics_1m (sensor_id, minute, count, sum, min, max)
SELECT sensor_id, minute, count, sum, min, max FROM metrics_1m_flat;
DROP TABLE metrics_1m_flat;

-- Raw partitions come with their day's 1-minute partition; neither is created again for a day
-- behind the raw horizon.
CREATE OR REPLACE FUNCTION sensorpipe_ensure_metrics_partitions(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    created integer := 0;
    part    text;
    horizon timestamptz := (SELECT raw_horizon FROM retention_state);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    FOR d IN SELECT generate_series(p_from, p_to, interval '1 day')::date LOOP
        CONTINUE WHEN horizon IS NOT NULL AND (d + 1)::timestamp AT TIME ZONE 'UTC' <= horizon;
        part := format('metrics_%s', to_char(d, 'YYYYMMDD'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF metrics FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        PERFORM sensorpipe_ensure_minute_day(d);
    END LOOP;
    RETURN created;
END;
$$;

-- Drops the 1-minute rollups of one UTC day before `p_today` (its partition, and its rows of
-- the per-Kafka-partition minute rollup), records the drop and moves the minute horizon past
-- the day. Returns the rows dropped, as the planner's estimate.
CREATE FUNCTION sensorpipe_drop_minute_day(p_day date, p_reason text, p_today date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part  text := format('metrics_1m_%s', to_char(p_day, 'YYYYMMDD'));
    upto  timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
    n     bigint := 0;
    bytes bigint := 0;
BEGIN
    IF p_day >= p_today THEN
        RAISE EXCEPTION 'refusing to drop %: only days before today are dropped', p_day;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    IF to_regclass(part) IS NULL THEN
        RETURN 0;
    END IF;
    SELECT greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) INTO n, bytes
    FROM pg_class c WHERE c.oid = to_regclass(part);
    DELETE FROM metrics_1m_partition WHERE minute < upto;
    EXECUTE format('DROP TABLE %I', part);  -- last: it locks metrics_1m itself until commit
    UPDATE retention_state SET minute_horizon = greatest(coalesce(minute_horizon, upto), upto);
    INSERT INTO retention_log (day, reason, rows, bytes, tier) VALUES (p_day, p_reason, n, bytes, '1m');
    RETURN n;
END;
$$;

-- A raw day is dropped as in 009, in an order that keeps readers of `metrics` waiting for the
-- drop alone: dropping a partition locks its parent (ACCESS EXCLUSIVE) until the transaction
-- ends, and the day's dedupe rows, deleted in the same transaction, take far longer to delete.
-- `metrics` is first locked against writes (SHARE: reads go on, no event is stored meanwhile,
-- as before), the dedupe rows are deleted, and the partition is dropped last, when the lock
-- is raised to ACCESS EXCLUSIVE only until the commit that follows.
CREATE OR REPLACE FUNCTION sensorpipe_drop_raw_day(p_day date, p_reason text, p_today date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part  text := format('metrics_%s', to_char(p_day, 'YYYYMMDD'));
    upto  timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
    n     bigint := 0;
    bytes bigint := 0;
BEGIN
    IF p_day >= p_today THEN
        RAISE EXCEPTION 'refusing to drop %: only days before today are dropped', p_day;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    IF to_regclass(part) IS NULL THEN
        RETURN 0;  -- dropped already (by another consumer), or never written
    END IF;
    LOCK TABLE metrics IN SHARE MODE;
    SELECT greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) INTO n, bytes
    FROM pg_class c WHERE c.oid = to_regclass(part);
    DELETE FROM processed_events WHERE event_ts < upto;
    EXECUTE format('DROP TABLE %I', part);
    UPDATE retention_state SET raw_horizon = greatest(coalesce(raw_horizon, upto), upto);
    INSERT INTO retention_log (day, reason, rows, bytes) VALUES (p_day, p_reason, n, bytes);
    RETURN n;
END;
$$;

-- Time retention as in 009, with the 1-minute days past their cutoff dropped as partitions.
CREATE OR REPLACE FUNCTION sensorpipe_apply_tiered_retention(
    p_today date, p_raw_days integer, p_1m_days integer, p_1h_days integer
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today   date := p_today;
    r       record;
    dropped integer := 0;
BEGIN
    FOR r IN
        SELECT to_date(substr(c.relname, 9), 'YYYYMMDD') AS day
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'metrics'::regclass AND c.relname ~ '^metrics_[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < today - p_raw_days
        ORDER BY 1
    LOOP
        PERFORM sensorpipe_drop_raw_day(r.day, 'time', today);
        dropped := dropped + 1;
    END LOOP;
    FOR r IN
        SELECT to_date(substr(c.relname, 12), 'YYYYMMDD') AS day
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'metrics_1m'::regclass AND c.relname ~ '^metrics_1m_[0-9]{8}$'
          AND to_date(substr(c.relname, 12), 'YYYYMMDD') < today - p_1m_days
        ORDER BY 1
    LOOP
        PERFORM sensorpipe_drop_minute_day(r.day, 'time', today);
    END LOOP;
    FOR r IN SELECT table_name, time_column, tier FROM retention_targets ORDER BY table_name::text LOOP
        EXECUTE format('DELETE FROM %s WHERE %I < $1', r.table_name, r.time_column)
            USING (today - CASE r.tier WHEN 'raw' THEN p_raw_days WHEN '1m' THEN p_1m_days ELSE p_1h_days END)
                  ::timestamp AT TIME ZONE 'UTC';
    END LOOP;
    RETURN dropped;
END;
$$;
