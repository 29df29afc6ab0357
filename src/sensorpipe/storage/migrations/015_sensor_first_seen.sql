-- When each sensor was first stored, so that its usual interval (first to last seen, over its
-- events) says when it has gone quiet: the fleet view's live, late and silent. Sensors stored
-- before this migration keep null (their interval is unknown, and a default applies).
ALTER TABLE sensor_stats ADD COLUMN first_seen timestamptz;
ALTER TABLE sensor_stats ALTER COLUMN first_seen SET DEFAULT clock_timestamp();
