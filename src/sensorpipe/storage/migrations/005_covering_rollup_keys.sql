-- 005: the rollups' primary keys carry their values (INCLUDE), so reads are index-only.
--
-- metrics_1m is written in minute order across every sensor, so one sensor's day of minutes
-- lies on about 1,440 different heap pages: GET /api/readings/aggregate for one sensor over
-- 24 h touched 1,428 heap pages for 1,440 rows. With the values in the key's leaf pages the
-- same read is an index-only scan of about 15 pages (once autovacuum has marked the pages
-- all-visible, which it does for every minute that is no longer being written).
-- metrics_1m_partition gets the same for GET /api/summary, which sums a day of it.
--
-- The cost: an upsert that changes count/sum/min/max now also rewrites the key's index entry
-- (no HOT update). The consumer's rollup upserts are one row per sensor and minute per batch,
-- not one per event.
-- ON CONFLICT (sensor_id, minute) and (minute, kafka_partition) still infer these keys:
-- INCLUDE columns are not key columns. On a large existing store this rebuilds both keys
-- inside this migration's transaction.

ALTER TABLE metrics_1m DROP CONSTRAINT metrics_1m_pkey;
ALTER TABLE metrics_1m ADD CONSTRAINT metrics_1m_pkey
    PRIMARY KEY (sensor_id, minute) INCLUDE (count, sum, min, max);

ALTER TABLE metrics_1m_partition DROP CONSTRAINT metrics_1m_partition_pkey;
ALTER TABLE metrics_1m_partition ADD CONSTRAINT metrics_1m_partition_pkey
    PRIMARY KEY (minute, kafka_partition) INCLUDE (count, sum, min, max);
