-- 008: the Kafka positions each partition has been processed through, by topic incarnation.
--
-- Contract: every message at an offset in [first_offset, last_offset] of that partition was
-- stored, ignored (duplicate, conflict, redelivery) or dead-lettered by a committed batch.
-- A batch's part records the positions it read in the same transaction as its rows, so a
-- range never claims more than is committed. A consumer reading a position inside a range
-- again (a restart after the database commit, or a group reset to the earliest offset)
-- counts it as a redelivery without decoding it; see storage.positions.
--
-- topic_id is Kafka's id of the topic, not its name: a topic deleted and created again under
-- the same name restarts its offsets at 0 and gets a new id, so its positions never match
-- the old topic's ranges. Ranges are not trimmed by retention: a few rows per partition (a
-- new one only where consumption did not continue from the last), and a position read again
-- long after was processed all the same.

CREATE TABLE processed_ranges (
    topic_id        text    NOT NULL,
    kafka_partition integer NOT NULL,
    first_offset    bigint  NOT NULL,
    last_offset     bigint  NOT NULL,
    PRIMARY KEY (topic_id, kafka_partition, first_offset),
    CHECK (0 <= first_offset AND first_offset <= last_offset)
);
