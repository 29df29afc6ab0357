-- 009: retention by size as well as by days, and a record of every drop.
--
-- The consumer keeps PostgreSQL inside its share of the disk budget (contracts.disk): while the
-- store is over it, the oldest raw day is dropped, never the current UTC day. A drop removes
-- the day's metrics partition and its events' dedupe rows, and moves the raw horizon: events
-- older than it are dead-lettered as out of window from then on, so the dedupe window stays
-- equal to what is kept (an event of a dropped day can never be stored a second time).
-- Rollups are not touched: they are kept by their own retention.

-- One row: the earliest event time still accepted. NULL: only the time retention applies.
CREATE TABLE retention_state (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    raw_horizon timestamptz
);
INSERT INTO retention_state DEFAULT VALUES;

-- Every drop, by time or by size: what went and why (the API and /metrics show it).
CREATE TABLE retention_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dropped_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    day        date        NOT NULL,
    reason     text        NOT NULL CHECK (reason IN ('time', 'size')),
    rows       bigint      NOT NULL,
    bytes      bigint      NOT NULL
);
INSERT INTO retention_targets (table_name, time_column) VALUES ('retention_log', 'dropped_at');

-- The dedupe rows of a day are found by a range of event_ts. processed_events is written in
-- nearly event-time order, so a BRIN index finds them by block range; an insert into a block
-- range not yet summarised (vacuum summarises them) does not touch it.
CREATE INDEX processed_events_ts_brin ON processed_events USING brin (event_ts);

-- Drops the raw rows of one UTC day before `p_today`: its metrics partition and its dedupe
-- rows; records the drop and moves the raw horizon past the day. Returns the rows dropped, as
-- the planner's estimate (counting a day of rows would read it all). The caller names today:
-- the consumer's clock, which a simulation may run faster than the server's.
CREATE FUNCTION sensorpipe_drop_raw_day(p_day date, p_reason text, p_today date) RETURNS bigint
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
    SELECT greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) INTO n, bytes
    FROM pg_class c WHERE c.oid = to_regclass(part);
    EXECUTE format('DROP TABLE %I', part);
    DELETE FROM processed_events WHERE event_ts < upto;
    UPDATE retention_state SET raw_horizon = greatest(coalesce(raw_horizon, upto), upto);
    INSERT INTO retention_log (day, reason, rows, bytes) VALUES (p_day, p_reason, n, bytes);
    RETURN n;
END;
$$;

-- Tiers: raw rows, 1-minute rollups and 1-hour rollups each have their own retention, so the
-- rollups outlive the raw rows they summarise. Each retention target belongs to a tier.
ALTER TABLE retention_targets ADD COLUMN tier text NOT NULL DEFAULT 'raw' CHECK (tier IN ('raw', '1m', '1h'));
UPDATE retention_targets SET tier = '1m' WHERE table_name IN ('metrics_1m'::regclass, 'metrics_1m_partition'::regclass);
UPDATE retention_targets SET tier = '1h' WHERE table_name IN ('metrics_1h_partition'::regclass, 'retention_log'::regclass);

-- Per-sensor hourly rollups: what aggregates over long ranges read once the 1-minute rollups
-- of those days are gone. Written by the consumer in the batch transaction, like the others.
CREATE TABLE metrics_1h (
    sensor_id text             NOT NULL,
    hour      timestamptz      NOT NULL,
    count     bigint           NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    PRIMARY KEY (sensor_id, hour) INCLUDE (count, sum, min, max)
) WITH (fillfactor = 70);
INSERT INTO metrics_1h (sensor_id, hour, count, sum, min, max)
SELECT sensor_id, date_bin('1 hour', minute, timestamptz 'epoch'), sum(count), sum(sum), min(min), max(max)
FROM metrics_1m GROUP BY 1, 2;
INSERT INTO retention_targets (table_name, time_column, tier) VALUES ('metrics_1h', 'hour', '1h');

-- The records of dead letters and of conflicts are kept as long as the raw rows, so a steady
-- rate of poison holds a bounded number of them (the DLQ topic keeps the messages themselves
-- by its own retention). Their time columns get an index to delete by.
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at);
CREATE INDEX event_conflicts_seen_at ON event_conflicts (seen_at);
INSERT INTO retention_targets (table_name, time_column, tier) VALUES
    ('dead_letters', 'dead_at', 'raw'),
    ('event_conflicts', 'seen_at', 'raw');

-- Time retention per tier. Raw days older than the raw cutoff are dropped (and logged), and
-- each target's rows older than its tier's cutoff are deleted. Cutoffs are UTC midnights
-- before `p_today` (the consumer's clock). Returns the number of raw partitions dropped.
CREATE FUNCTION sensorpipe_apply_tiered_retention(
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
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'metrics' AND c.relname ~ '^metrics_[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < today - p_raw_days
        ORDER BY 1
    LOOP
        PERFORM sensorpipe_drop_raw_day(r.day, 'time', today);
        dropped := dropped + 1;
    END LOOP;
    FOR r IN SELECT table_name, time_column, tier FROM retention_targets ORDER BY table_name::text LOOP
        EXECUTE format('DELETE FROM %s WHERE %I < $1', r.table_name, r.time_column)
            USING (today - CASE r.tier WHEN 'raw' THEN p_raw_days WHEN '1m' THEN p_1m_days ELSE p_1h_days END)
                  ::timestamp AT TIME ZONE 'UTC';
    END LOOP;
    RETURN dropped;
END;
$$;

-- Partitions are created ahead and on demand, but never again for days behind the raw
-- horizon: a dropped day stays dropped (its late events are dead-lettered as out of window).
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
    END LOOP;
    RETURN created;
END;
$$;
