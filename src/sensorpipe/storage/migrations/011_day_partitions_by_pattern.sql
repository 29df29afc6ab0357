-- 011: day partitions are listed without parsing a name that is not a day partition's.
--
-- The day partitions of `metrics` and `metrics_1m` are found by name (<parent>_YYYYMMDD).
-- SQL fixes no order among AND-ed conditions: a query that filtered pg_class rows by the
-- name pattern AND by the date parsed from the name could have the parse evaluated first,
-- on rows the pattern would have excluded. With a plan that scans pg_class before joining
-- pg_inherits, to_date() meets catalog names such as pg_toast_2619 and fails with
-- 'invalid value ... for "YYYY"'. Here the date is parsed only inside a CASE on the pattern,
-- which is evaluated in order, so no plan can parse another name.

CREATE FUNCTION sensorpipe_day_partitions(p_parent regclass)
RETURNS TABLE (day date, relid oid)
LANGUAGE sql STABLE AS $$
    SELECT d.day, d.relid
    FROM (
        SELECT CASE WHEN c.relname ~ ('^' || p_parent::text || '_[0-9]{8}$')
                    THEN to_date(right(c.relname, 8), 'YYYYMMDD') END AS day,
               c.oid AS relid
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = p_parent
    ) d
    WHERE d.day IS NOT NULL
$$;

-- As in 010, with the day partitions listed by sensorpipe_day_partitions.
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
        SELECT p.day FROM sensorpipe_day_partitions('metrics'::regclass) p
        WHERE p.day < today - p_raw_days ORDER BY 1
    LOOP
        PERFORM sensorpipe_drop_raw_day(r.day, 'time', today);
        dropped := dropped + 1;
    END LOOP;
    FOR r IN
        SELECT p.day FROM sensorpipe_day_partitions('metrics_1m'::regclass) p
        WHERE p.day < today - p_1m_days ORDER BY 1
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
