"""The API process's configuration, built from the settings by `api.main.build_config`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensorpipe.storage import queries


@dataclass(frozen=True)
class ApiConfig:
    dsn: str
    bootstrap: str
    topic: str
    dlq_topic: str
    group: str
    admin_token: str | None
    statement_timeout_ms: int
    cors_origins: list[str]
    dashboard_dir: Path | None
    allowed_hosts: list[str] | None = None  # Host names answered (api.gate); None: any
    max_body_bytes: int = 65_536
    write_limit: int = 10  # PUTs per client per window
    write_window_s: float = 10.0
    monitor_interval_s: float = 1.0
    security_protocol: str = "PLAINTEXT"
    hour_cache_bytes: int = 32 << 20  # rendered whole hours of one sensor's buckets (api.hours)
    csv_page_rows: int = 5_000  # rows a CSV download reads and writes at a time (api.routes.export)
    state_dir: Path | None = None  # the local stack's state folder, where its disk plan is
    disk_floor: str | None = None  # SENSORPIPE_DISK_FLOOR, judged as the consumer's guard does
    tiers: queries.Tiers = field(default_factory=queries.Tiers)  # how long each resolution is kept
    # The pipeline's clock (contracts.clock), the one producer and consumer stamp and retain
    # by: "now" for default ranges and for which tier still covers a range.
    clock: Callable[[], float] = time.time

    def kafka_client(self) -> dict[str, str | int | float | bool]:
        """What every Kafka client of the API is configured with, whatever else it adds."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
