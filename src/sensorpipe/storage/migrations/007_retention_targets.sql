-- 007: retention is driven by a table of what it trims, not restated per migration.
--
-- Until now, every migration that added a table with a time column restated the retention
-- function whole (migrations are append-only) to add one DELETE. A migration that adds such a
-- table now adds one row here instead. The metrics partitions are still dropped by name; this
-- table lists the tables whose rows older than the cutoff are deleted.

CREATE TABLE retention_targets (
    table_name  regclass PRIMARY KEY,  -- resolved when inserted: a misspelt table fails the migration
    time_column name     NOT NULL
);

INSERT INTO retention_targets (table_name, time_column) VALUES
    ('processed_events', 'event_ts'),
    ('metrics_1m', 'minute'),
    ('metrics_1m_partition', 'minute'),
    ('metrics_1h_partition', 'hour'),
    ('ignored_deliveries', 'seen_at');

-- The cutoff is a UTC midnight (whole days, whole hours). The DELETE is composed from the
-- catalog's own names (%s of a regclass quotes as needed, %I quotes the column) and takes the
-- cutoff as a parameter.
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
    FOR r IN SELECT table_name, time_column FROM retention_targets ORDER BY table_name::text LOOP
        EXECUTE format('DELETE FROM %s WHERE %I < $1', r.table_name, r.time_column)
            USING cutoff::timestamp AT TIME ZONE 'UTC';
    END LOOP;
    RETURN dropped;
END;
$$;
