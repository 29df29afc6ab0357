-- 001: the store. Applied once by storage.migrate, inside one transaction.
--
-- Idempotency contract: processed_events.event_id is the dedupe key. A batch inserts its
-- event ids there with ON CONFLICT DO NOTHING and writes only the rows that were new into
-- metrics and metrics_1m, all in one transaction, before any Kafka offset moves.

CREATE TABLE processed_events (
    event_id        text        PRIMARY KEY,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    content_hash    bigint      NOT NULL,   -- xxh64-style hash of the canonical payload; tells a duplicate from a conflict
    event_ts        timestamptz NOT NULL,   -- retention trims the dedupe window by event time, like metrics
    processed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Raw readings, one range partition per UTC day, created ahead by
-- sensorpipe_ensure_metrics_partitions(). ingest_id records ingest order so per-sensor
-- order can be proven against seq; its sequence is uncached on purpose, so that ingest
-- order stays global even across consumer sessions.
CREATE TABLE metrics (
    ingest_id       bigint GENERATED ALWAYS AS IDENTITY (CACHE 1),
    ts              timestamptz      NOT NULL,
    sensor_id       text             NOT NULL,
    event_id        text             NOT NULL,
    value           double precision NOT NULL,
    seq             bigint           NOT NULL,
    kafka_partition integer          NOT NULL,
    kafka_offset    bigint           NOT NULL,
    ingested_at     timestamptz      NOT NULL DEFAULT clock_timestamp()
) PARTITION BY RANGE (ts);

-- Per-sensor reads use (sensor_id, ts). Time-ordered reads across all sensors use (ts, event_id),
-- which is also the keyset of GET /api/readings; event time is nearly monotonic, so inserts
-- land on the index's rightmost page and stay cheap.
CREATE INDEX metrics_sensor_ts ON metrics (sensor_id, ts, event_id);
CREATE INDEX metrics_ts ON metrics (ts, event_id);

-- Per-minute rollups of new rows only: count, sum, min, max per sensor and minute.
CREATE TABLE metrics_1m (
    sensor_id text             NOT NULL,
    minute    timestamptz      NOT NULL,
    count     bigint           NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    PRIMARY KEY (sensor_id, minute)
) WITH (fillfactor = 70);  -- room for HOT updates: each batch updates the current minute
CREATE INDEX metrics_1m_minute ON metrics_1m (minute);

-- Per-sensor running state, kept by the consumer in the batch transaction.
CREATE TABLE sensor_stats (
    sensor_id        text             PRIMARY KEY,
    events           bigint           NOT NULL,
    last_value       double precision NOT NULL,
    last_ts          timestamptz      NOT NULL,
    last_seq         bigint           NOT NULL,
    seq_gaps         bigint           NOT NULL DEFAULT 0,
    order_violations bigint           NOT NULL DEFAULT 0,
    updated_at       timestamptz      NOT NULL DEFAULT clock_timestamp()
) WITH (fillfactor = 50);  -- updated on every batch; HOT updates keep the index untouched

-- Counters are kept per Kafka partition: a partition has one owner at a time, so
-- consumers never contend on one hot row.
-- duplicates:   an event_id already stored, delivered again from another Kafka offset
--               (the producer re-sent it);
-- redeliveries: the same Kafka offset consumed again (a consumer restart or rewind);
-- conflicts:    an event_id already stored, with different content.
CREATE TABLE ingest_counters (
    kafka_partition integer PRIMARY KEY,
    stored          bigint  NOT NULL DEFAULT 0,
    duplicates      bigint  NOT NULL DEFAULT 0,
    redeliveries    bigint  NOT NULL DEFAULT 0,
    conflicts       bigint  NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per dead-lettered Kafka message, keyed by its source position, so a redelivered
-- poison message is counted once. The message itself is on the DLQ topic.
CREATE TABLE dead_letters (
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    reason          text        NOT NULL,
    detail          text        NOT NULL,
    poison_label    text,                  -- the producer's sensorpipe.poison header, if any
    dead_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kafka_partition, kafka_offset)
);

-- An event_id seen again with different content: kept visible, never merged.
CREATE TABLE event_conflicts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    content_hash    bigint      NOT NULL,
    stored_hash     bigint      NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX event_conflicts_event ON event_conflicts (event_id);

-- The configuration store: every PUT appends a version; the newest row is current.
CREATE TABLE producer_config (
    version    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    config     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_by text        NOT NULL DEFAULT 'system'
);

-- Creates the daily partitions of metrics for [p_from, p_to] (UTC days) that do not exist.
-- Runtime code calls this function instead of issuing DDL itself.
CREATE FUNCTION sensorpipe_ensure_metrics_partitions(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    created integer := 0;
    part    text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sensorpipe.metrics_partitions'));
    FOR d IN SELECT generate_series(p_from, p_to, interval '1 day')::date LOOP
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

-- Drops metrics partitions that end at or before the cutoff day and trims the dedupe
-- window and rollups to match. Returns the number of partitions dropped.
CREATE FUNCTION sensorpipe_apply_retention(p_keep_days integer) RETURNS integer
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
    RETURN dropped;
END;
$$;
