"""The wire format shared by every component: topic names, the event schema, DLQ headers."""
