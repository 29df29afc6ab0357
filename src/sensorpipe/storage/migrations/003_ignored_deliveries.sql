-- 003: copies that were not stored are remembered by their Kafka position.
--
-- A crash between the database commit and the offset commit redelivers a whole batch. Its
-- new rows are absorbed by processed_events, but a duplicate or conflicting copy inside it
-- used to be counted again. Recording each ignored copy once, keyed by (partition, offset),
-- makes `duplicates` and `conflicts` in ingest_counters exact under redelivery: a copy
-- counts the first time it is seen, never again.
--
-- Assumption, as for processed_events' positions: a topic is not recreated under a live
-- database (offsets would restart from 0).

CREATE TABLE ignored_deliveries (
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_id        text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('duplicate', 'conflict')),
    seen_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX ignored_deliveries_seen ON ignored_deliveries (seen_at);

-- Retention keeps them for the dedupe window, like processed_events. The function is
-- restated whole (migrations are append-only); only the last DELETE is new.
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
    DELETE FROM ignored_deliveries WHERE seen_at < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END;
$$;
