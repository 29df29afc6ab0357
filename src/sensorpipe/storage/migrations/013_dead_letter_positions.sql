-- Where each dead letter sits on the dead-letter topic, from the broker's acknowledgement
-- (null for dead letters written before this migration), so that its payload can be read
-- back by position; and what a redrive made of it (`sensorpipe dlq redrive`): when, and
-- the event id it produced back to the main topic, which the audit counts as redriven.
ALTER TABLE dead_letters
    ADD COLUMN dlq_partition     integer,
    ADD COLUMN dlq_offset        bigint,
    ADD COLUMN redriven_at       timestamptz,
    ADD COLUMN redriven_event_id text;

-- Browsing by reason, newest first.
CREATE INDEX dead_letters_reason_dead_at ON dead_letters (reason, dead_at);
