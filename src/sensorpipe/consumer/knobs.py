"""The consumer's knobs: its flags, adjusted by the producer configuration stored in the
database (the demo's slowdown scenario sets them there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.storage import config_store


@dataclass
class Knobs:
    """The effective slowdown knob: the larger of the flag and the stored configuration."""

    slowdown_ms: int
    batch_max: int  # from the settings, lowered by the stored configuration
    version: int | None = None

    @classmethod
    def effective(cls, slowdown_ms: int, batch_max: int, stored: PipelineConfig | None, version: int | None) -> Knobs:
        """The flags' knobs with the stored configuration applied: the larger slowdown, the
        smaller batch."""
        if stored is None:
            return cls(slowdown_ms, batch_max, version)
        if stored.consumer_batch_max is not None:
            batch_max = min(batch_max, stored.consumer_batch_max)
        return cls(max(slowdown_ms, stored.consumer_slowdown_ms), batch_max, version)

    @classmethod
    def stored(cls, conn: psycopg.Connection[Any], slowdown_ms: int, batch_max: int) -> Knobs:
        """The flags' knobs with the latest stored configuration applied; a database error
        propagates."""
        row = config_store.latest_or_none(conn)
        return cls.effective(slowdown_ms, batch_max, row.config if row else None, row.version if row else None)
