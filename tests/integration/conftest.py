"""One real Kafka broker and one real PostgreSQL cluster per test session, started by the
same launcher as `sensorpipe up`, on ports of their own so a running dev stack is untouched.

Isolation: each test that needs it gets a fresh database (`db_dsn`) and fresh topics
(`topics`); nothing here is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensorpipe.api.app import ApiConfig
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.supervisor import Platform, down
from sensorpipe.settings import DatabaseSettings, KafkaSettings
from sensorpipe.storage.migrate import migrate

from .helpers import ApiServer

REPO = Path(__file__).resolve().parents[2]
TEST_KAFKA_PORT = int(os.environ.get("SENSORPIPE_TEST_KAFKA_PORT", "19092"))
TEST_PG_PORT = int(os.environ.get("SENSORPIPE_TEST_PG_PORT", "56432"))


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return Path(os.environ.get("SENSORPIPE_TEST_STATE_DIR", REPO / ".state" / "test")).resolve()


@pytest.fixture(scope="session")
def platform(state_dir: Path) -> Iterator[Platform]:
    down(state_dir, purge=True, log=lambda _m: None)  # leftovers of an aborted run
    kafka = KafkaSettings(
        bootstrap_servers=None, port=TEST_KAFKA_PORT, brokers=1, libs_dir=REPO / ".cache" / "kafka" / "libs"
    )
    db = DatabaseSettings(url=None, port=TEST_PG_PORT)
    p = Platform(kafka, db, state_dir, log=lambda _m: None)
    p.start()
    yield p
    p.stop()
    # down --purge also removes a data folder kept outside the state folder (a clone under a
    # mode-700 home keeps PostgreSQL's data under /var/lib/sensorpipe).
    down(state_dir, purge=True, log=lambda _m: None)


@pytest.fixture(scope="session")
def kafka_settings(platform: Platform) -> KafkaSettings:
    return platform.kafka_settings


@pytest.fixture
def db_dsn(platform: Platform) -> str:
    """A fresh, migrated database for this test."""
    assert platform.pg is not None
    dsn = platform.pg.create_database(f"t_{uuid.uuid4().hex[:12]}")
    migrate(dsn)
    return dsn


@pytest.fixture
def start_api() -> Iterator[Callable[[ApiConfig], str]]:
    """Serve the real API app on a free loopback port for this test; returns its URL."""
    servers: list[ApiServer] = []

    def start(cfg: ApiConfig) -> str:
        servers.append(ApiServer(cfg))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def api_config(dsn: str, topics: Topics, token: str | None = None) -> ApiConfig:
    return ApiConfig(
        dsn=dsn,
        bootstrap=topics.settings.bootstrap(),
        topic=topics.main,
        dlq_topic=topics.dlq,
        group=f"g-{uuid.uuid4().hex[:8]}",
        admin_token=token,
        statement_timeout_ms=5000,
        cors_origins=[],
        dashboard_dir=None,
        write_limit=1000,
        monitor_interval_s=0.5,
    )


@dataclass(frozen=True)
class Topics:
    main: str
    dlq: str
    settings: KafkaSettings


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> Topics:
    """A fresh main topic (12 partitions) and DLQ topic for this test."""
    suffix = uuid.uuid4().hex[:10]
    main, dlq = f"sensor_metrics_{suffix}", f"sensor_metrics_{suffix}.dlq"
    ensure_topics(kafka_settings, topic=main, dlq_topic=dlq)
    return Topics(main, dlq, kafka_settings.model_copy(update={"topic": main, "dlq_topic": dlq}))
