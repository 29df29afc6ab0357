-- 006: an hourly rollup over all sensors, per Kafka partition.
--
-- GET /api/summary over every sensor summed a day of metrics_1m_partition: 17,280 rows
-- (12 partitions x 1,440 minutes), 4.4-5.6 ms (medians) of its statements. Whole hours now
-- come from here (288 rows a day) and only the partial hours at its two ends from the minute
-- rollup. The consumer writes it in the same transaction as the other rollups; hours are UTC
-- (date_bin from the epoch), independent of the session's time zone.

CREATE TABLE metrics_1h_partition (
    kafka_partition integer          NOT NULL,
    hour            timestamptz      NOT NULL,
    count           bigint           NOT NULL,
    sum             double precision NOT NULL,
    min             double precision NOT NULL,
    max             double precision NOT NULL,
    PRIMARY KEY (hour, kafka_partition) INCLUDE (count, sum, min, max)
) WITH (fillfactor = 70);

INSERT INTO metrics_1h_partition (kafka_partition, hour, count, sum, min, max)
SELECT kafka_partition, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
FROM metrics_1m_partition GROUP BY 1, 2;

-- Retention trims it with the others. The function is restated whole (migrations are
-- append-only); only the last DELETE is new. The cutoff is a UTC midnight, so whole hours.
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
    DELETE FROM metrics_1h_partition WHERE hour < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END;
$$;
