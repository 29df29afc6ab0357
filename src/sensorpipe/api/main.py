"""Wiring of the `sensorpipe api` process."""

from __future__ import annotations

import uvicorn

from sensorpipe.api.app import ApiConfig, create_app
from sensorpipe.runtime.process import configure_logging
from sensorpipe.runtime.procs import PlatformError
from sensorpipe.settings import (
    AdminSettings,
    ApiSettings,
    ClockSettings,
    ConsumerSettings,
    DatabaseSettings,
    DiskSettings,
    KafkaSettings,
    StateSettings,
)
from sensorpipe.storage.queries import Tiers


def build_config(
    api: ApiSettings, db: DatabaseSettings, kafka: KafkaSettings, admin: AdminSettings, consumer: ConsumerSettings
) -> ApiConfig:
    token = admin.admin_token.get_secret_value() if admin.admin_token else None
    if not api.is_loopback() and not token:
        raise PlatformError(
            f"refusing to listen on {api.host} without an admin token: set SENSORPIPE_ADMIN_TOKEN "
            f"(writes need it beyond loopback), or listen on 127.0.0.1"
        )
    return ApiConfig(
        dsn=db.dsn(),
        bootstrap=kafka.bootstrap(),
        topic=kafka.topic,
        dlq_topic=kafka.dlq_topic,
        group=consumer.group_id,
        admin_token=token,
        statement_timeout_ms=db.statement_timeout_ms,
        cors_origins=api.cors_origins,
        allowed_hosts=api.served_hosts(),
        max_body_bytes=api.max_body_bytes,
        security_protocol=kafka.security_protocol,
        dashboard_dir=api.dashboard_dir.resolve(),
        state_dir=StateSettings().resolved(),
        disk_floor=DiskSettings().floor,
        tiers=Tiers(db.retention_days, db.rollup_1m_days, db.rollup_1h_days),
        clock=ClockSettings().clock(),
    )


def run_api(
    api: ApiSettings, db: DatabaseSettings, kafka: KafkaSettings, admin: AdminSettings, consumer: ConsumerSettings
) -> None:
    cfg = build_config(api, db, kafka, admin, consumer)
    configure_logging()
    uvicorn.run(create_app(cfg), host=api.host, port=api.port, log_level="warning", access_log=False)
