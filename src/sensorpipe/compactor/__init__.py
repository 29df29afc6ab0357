"""The compactor: closed days of raw rows rewritten as compressed chunks (storage.compaction)."""
