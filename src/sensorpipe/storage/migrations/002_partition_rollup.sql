-- 002: a per-minute rollup over all sensors, kept per Kafka partition.
--
-- Summaries over every sensor read this instead of metrics_1m: a day is 12 x 1,440 rows
-- here against sensors x 1,440 there. It is keyed by partition, not global, because a
-- partition has one consumer at a time: writers never contend on a hot row.

CREATE TABLE metrics_1m_partition (
    kafka_partition integer          NOT NULL,
    minute          timestamptz      NOT NULL,
    count           bigint           NOT NULL,
    sum             double precision NOT NULL,
    min             double precision NOT NULL,
    max             double precision NOT NULL,
    PRIMARY KEY (minute, kafka_partition)
) WITH (fillfactor = 70);

-- Backfill from what is already stored (empty on a fresh install).
INSERT INTO metrics_1m_partition (kafka_partition, minute, count, sum, min, max)
SELECT kafka_partition, date_trunc('minute', ts), count(*), sum(value), min(value), max(value)
FROM metrics GROUP BY 1, 2;

-- Retention trims this rollup with the others.
CREATE OR REPLACE FUNCTION sensorpipe_apply_retention(p_keep_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cutoff  date := (now() AT TIME ZONE 'UTC')::date - p_keep_days;
    r       record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'metrics' AND c.relname ~ '^metrics_[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < cutoff
    LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM processed_events WHERE event_ts < cutoff::timestamp AT TIME ZONE 'UTC';
    DELETE FROM metrics_1m WHERE minute < cutoff::timestamp AT TIME ZONE 'UTC';
    DELETE FROM metrics_1m_partition WHERE minute < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END;
$$;
