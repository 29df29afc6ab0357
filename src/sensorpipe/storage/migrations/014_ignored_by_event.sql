-- The event lookup (`/api/events/{id}`) lists the copies of an id that were not stored
-- (duplicates and conflicts) by that id.
CREATE INDEX ignored_deliveries_event ON ignored_deliveries (event_id);
