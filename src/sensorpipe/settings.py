"""Typed settings, one object per concern, all read from ``SENSORPIPE_*`` env vars.

Nothing here is instantiated at import time: each process builds the settings it
needs in its own wiring function (see ``runtime.wiring``), so tests can pass their
own values without touching the environment.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.contracts.clock import make_clock
from sensorpipe.contracts.disk import parse_amount
from sensorpipe.contracts.topics import CONSUMER_GROUP, DLQ_TOPIC, PARTITIONS, TOPIC

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
PASSFILE = "pgpass"  # the local cluster's libpq password file, in <state dir>/postgres


def _env(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=None, extra="ignore")


class StateSettings(BaseSettings):
    """Where the local platform keeps Kafka logs, PostgreSQL data, pid files and logs."""

    model_config = _env("SENSORPIPE_")

    state_dir: Path = Field(
        default=Path(".state"),
        description="Project state folder; survives `down`, removed by `down --purge`.",
    )

    def resolved(self) -> Path:
        return self.state_dir.expanduser().resolve()


class ClockSettings(BaseSettings):
    """A simulated clock for soak runs (contracts.clock); unset, the wall clock."""

    model_config = _env("SENSORPIPE_CLOCK_")

    start: float | None = Field(default=None, description="Simulated epoch seconds at `origin`; unset: the wall clock.")
    speed: float = Field(default=1.0, ge=1.0, le=100_000, description="Simulated seconds per real second.")
    origin: float | None = Field(
        default=None, description="Real epoch seconds at which the simulation stood at `start`; unset: process start."
    )

    def clock(self) -> Callable[[], float]:
        """The clock these settings describe (contracts.clock.make_clock)."""
        return make_clock(self.start, self.speed, self.origin)


class DiskSettings(BaseSettings):
    """The disk budget of the local stack (see contracts.disk)."""

    model_config = _env("SENSORPIPE_DISK_")

    budget: str = Field(
        default="40%",
        description="What the local Kafka log, PostgreSQL and the logs may take together: a size (50GB) or a "
        "share of the state folder's filesystem (40%). Never more than the filesystem holds above the floor.",
    )
    floor: str | None = Field(
        default=None,
        description="Free space the consumer keeps on the filesystems it writes to; below it, consumption "
        "pauses until space returns. A size or a share; unset: the larger of 5% and 2 GiB.",
    )
    kafka_share: float = Field(default=0.25, gt=0, lt=1, description="Kafka's part of the budget.")
    watch: list[Path] = Field(
        default_factory=list,
        description="Folders whose filesystems must stay above the floor; unset: the state folder and "
        "PostgreSQL's data folder when the stack is local.",
    )
    postgres_bytes: int | None = Field(
        default=None,
        ge=0,
        description="PostgreSQL's share in bytes, kept by size retention. `sensorpipe up` sets it from the budget; "
        "unset: only time retention.",
    )
    check_s: float = Field(default=2.0, gt=0, le=600, description="How often the consumer checks free space.")
    size_check_s: float = Field(default=30.0, gt=0, le=3600, description="How often size retention runs.")

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: str) -> str:
        parse_amount(v, 1 << 40)
        return v

    @field_validator("floor")
    @classmethod
    def _floor(cls, v: str | None) -> str | None:
        if v is not None and v.strip().lower() not in ("", "auto"):
            parse_amount(v, 1 << 40)
        return v


class KafkaSettings(BaseSettings):
    """The Kafka cluster and topic layout."""

    model_config = _env("SENSORPIPE_KAFKA_")

    bootstrap_servers: str | None = Field(
        default=None,
        description="An existing cluster to use. Unset: the local launcher starts a broker on `host`.",
    )
    host: ipaddress.IPv4Address = Field(
        default=ipaddress.IPv4Address("127.0.0.1"),
        description="Address the local brokers listen on and advertise; another address of this machine "
        "(e.g. a veth's) makes them reachable from behind it.",
    )
    port: int = Field(
        default=9092,
        ge=1,
        le=65000,
        description="Client port of local node 1; node i uses port+2(i-1), its controller the port after.",
    )
    security_protocol: str = Field(
        default="PLAINTEXT", pattern=r"^(PLAINTEXT|SSL)$", description="SSL for TLS in transit (e.g. MSK)."
    )
    libs_dir: Path = Field(default=Path(".cache/kafka/libs"), description="Maven-fetched Kafka jars.")
    brokers: int = Field(default=1, ge=1, le=5, description="Local cluster size (3 for the reliability work).")
    heap: str = Field(default="512m", pattern=r"^\d+[mMgG]$", description="JVM heap per local broker.")
    start_timeout_s: float = Field(default=90.0, gt=0, description="How long a local broker may take to answer.")
    topic: str = TOPIC
    dlq_topic: str = DLQ_TOPIC
    partitions: int = Field(default=PARTITIONS, ge=1, le=1000)

    @property
    def local(self) -> bool:
        """True when the launcher owns the cluster (no external bootstrap servers given)."""
        return not self.bootstrap_servers

    def bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return ",".join(f"{self.host}:{self.port + 2 * i}" for i in range(self.brokers))

    def client_config(self) -> dict[str, str | int | float | bool]:
        """What every Kafka client of ours is configured with, whatever else it adds."""
        return {"bootstrap.servers": self.bootstrap(), "security.protocol": self.security_protocol}

    def producer_config(self) -> dict[str, str | int | float | bool]:
        """What every producer of ours is configured with: idempotent, acknowledged by all in-sync
        replicas, and one request in flight per broker connection.

        librdkafka's idempotent producer keeps one request in flight per partition. When every
        partition with queued messages that a broker leads is waiting on its request, and the
        connection could still take more, the broker thread polls with no timeout until the
        broker answers: a busy loop, one core per broker, which on a shared host starves the
        brokers it waits on (docs/decisions/015-one-request-in-flight.md). With one request per
        connection, the next partition's request queues behind it and the thread sleeps."""
        return {
            **self.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 1,
        }

    def replication_factor(self) -> int:
        return min(3, self.brokers)


class DatabaseSettings(BaseSettings):
    """The PostgreSQL store."""

    model_config = _env("SENSORPIPE_DATABASE_")

    url: SecretStr | None = Field(
        default=None,
        description="An external server's URL. Unset: the launcher runs a local cluster in the state folder.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Server host when no URL is given. A non-loopback host means an external server (e.g. RDS).",
    )
    port: int = Field(default=55432, ge=1, le=65535, description="Port of the local cluster (or of `host`).")
    listen_also: ipaddress.IPv4Address | None = Field(
        default=None,
        description="Another address of this machine the local cluster listens on besides 127.0.0.1 "
        "(e.g. a veth's); clients on its subnet authenticate with the password too.",
    )
    name: str = Field(default="sensorpipe", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    user: str = Field(default="sensorpipe", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    password: SecretStr | None = Field(default=None, description="Password for `host` (from a secret store).")
    passfile: Path | None = Field(
        default=None,
        description="libpq password file for the local cluster; unset: the one set-up writes, "
        "<state dir>/postgres/pgpass (mode 0600).",
    )
    sslmode: str | None = Field(default=None, pattern=r"^(disable|prefer|require|verify-ca|verify-full)$")
    start_timeout_s: float = Field(default=60.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, ge=100, description="Read-side statement timeout.")
    retention_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="Days of raw readings kept (fewer if the disk budget is reached); also the dedupe window.",
    )
    rollup_1m_days: int = Field(default=90, ge=1, le=3650, description="Days of 1-minute rollups kept.")
    rollup_1h_days: int = Field(default=730, ge=1, le=36500, description="Days of 1-hour rollups kept.")

    @model_validator(mode="after")
    def _tiers_nest(self) -> DatabaseSettings:
        if not self.retention_days <= self.rollup_1m_days <= self.rollup_1h_days:
            raise ValueError("retention must nest: retention_days <= rollup_1m_days <= rollup_1h_days")
        return self

    @property
    def local(self) -> bool:
        """True when the launcher owns the cluster: no URL, and a loopback host."""
        return self.url is None and self.host in ("127.0.0.1", "localhost")

    def dsn(self) -> str:
        """The connection string, secrets included: hand it to a client, never print it (see
        `shown()`). The local cluster's password stays in its password file, which the
        string names."""
        if self.url is not None:
            return self.url.get_secret_value()
        auth = self.user
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        query = {"sslmode": self.sslmode} if self.sslmode else {}
        passfile = self.passfile or (StateSettings().resolved() / "postgres" / PASSFILE if self.local else None)
        if self.password is None and passfile is not None and passfile.is_file():
            query["passfile"] = str(passfile)
        tail = "?" + urlencode(query, safe="/") if query else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.name}{tail}"

    def shown(self) -> str:
        """The connection string with any password left out, for output and logs."""
        return redact_dsn(self.dsn())


def redact_dsn(dsn: str) -> str:
    """`dsn` without its password (URL or key=value form); other parts are kept."""
    parts = urlsplit(dsn)
    if parts.scheme.startswith("postgres"):
        if parts.password is not None:
            parts = parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}")
        return urlunsplit(parts._replace(query=re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


class ApiSettings(BaseSettings):
    """The read-only HTTP API."""

    model_config = _env("SENSORPIPE_API_")

    host: str = Field(default="127.0.0.1", description="Listen address. Non-loopback requires an admin token.")
    port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="Extra allowed origins; never '*'.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names requests may be addressed to, besides the loopback names. Listening beyond "
        "loopback with none given, any name is answered (writes need the admin token there).",
    )
    max_body_bytes: int = Field(default=65_536, ge=1_024, le=16 << 20, description="Largest request body accepted.")
    dashboard_dir: Path = Field(default=Path("dashboard/out"), description="The dashboard's static export.")

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, v: list[str]) -> list[str]:
        if "*" in v:
            raise ValueError("'*' is not allowed: list the origins explicitly")
        return v

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def served_hosts(self) -> list[str] | None:
        """The Host names the API answers to; None for any."""
        if self.is_loopback():
            return [*LOOPBACK_HOSTS, *self.allowed_hosts]
        return list(self.allowed_hosts) or None

    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class AdminSettings(BaseSettings):
    """Authentication for writes to the configuration store."""

    model_config = _env("SENSORPIPE_")

    admin_token: SecretStr | None = Field(default=None, description="Bearer token required for PUT requests.")


class ConsumerSettings(BaseSettings):
    """The consumer service."""

    model_config = _env("SENSORPIPE_CONSUMER_")

    group_id: str = Field(default=CONSUMER_GROUP, min_length=1)
    batch_max: int = Field(
        default=20_000,
        ge=1,
        le=100_000,
        description="Most events in one transaction. Under a backlog, larger batches amortise the per-sensor rollups.",
    )
    batch_wait_ms: int = Field(default=200, ge=1, le=60_000, description="Longest wait to fill a batch.")
    prefetch_kbytes: int = Field(
        default=8_192,
        ge=1_024,
        le=1_048_576,
        description="Fetched bytes librdkafka may hold ahead of the batch loop. They are counted compressed, so "
        "a compressed topic holds several times more events (and memory) per byte; sized for the producer's "
        "lz4 (docs/decisions/002-producer-compression.md). Raise it for an uncompressed topic.",
    )
    writers: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Database connections a batch is written through, each taking whole Kafka partitions.",
    )
    max_message_bytes: int = Field(default=65_536, ge=256, description="Larger messages are poison.")
    future_window_s: int = Field(default=86_400, ge=0, description="Accepted event-time lead over the clock.")
    slowdown_ms: int = Field(default=0, ge=0, le=60_000, description="Artificial DB latency per batch.")
    replay_by_position: bool = Field(
        default=True,
        description="Count a message at a Kafka position already recorded as processed as a redelivery, "
        "without decoding it (false: every message takes the full path).",
    )
    config_poll_s: float = Field(default=2.0, gt=0, description="How often the slowdown knob is re-read.")
    metrics_port: int = Field(default=9400, ge=0, le=65535, description="Prometheus port; 0 disables.")
    metrics_host: str = Field(default="127.0.0.1", description="Prometheus listen address (0.0.0.0 in containers).")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest backoff after a DB or broker error.")
    session_timeout_ms: int = Field(
        default=10_000, ge=6_000, le=300_000, description="Group session timeout (broker minimum 6 s)."
    )
    max_poll_interval_ms: int = Field(
        default=300_000, ge=6_000, le=3_600_000, description="Longest gap between polls before the group drops us."
    )
    db_idle_tx_timeout_ms: int = Field(
        default=30_000,
        ge=1_000,
        description="PostgreSQL ends a transaction of ours left idle this long (a frozen consumer's locks).",
    )
    db_net_timeout_ms: int = Field(
        default=15_000,
        ge=2_000,
        description="A write whose connection stays silent this long (data unacknowledged, keepalives "
        "unanswered) fails and is retried: a lost network never hangs a batch.",
    )
    # Fault injection for the chaos suite (tests/integration/test_chaos.py), never set in
    # production: the process SIGKILLs itself at this point of its Nth batch.
    failpoint: Literal["poll", "before_db_commit", "after_db_commit"] | None = None
    failpoint_after_batches: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _poll_interval_covers_session(self) -> ConsumerSettings:
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError("max_poll_interval_ms must be at least session_timeout_ms (a librdkafka rule)")
        return self


class CompactorSettings(BaseSettings):
    """The compactor (docs/decisions/011-compacted-days.md)."""

    model_config = _env("SENSORPIPE_COMPACTOR_")

    grace_days: int = Field(
        default=1,
        ge=1,
        le=30,
        description="Days before the current UTC day that stay as rows; older days are compacted. At least 1: the "
        "writer checks late rows against the chunks of days before its own current day only.",
    )
    interval_s: float = Field(default=60.0, gt=0, le=86_400, description="Pause between compaction passes.")
    metrics_port: int = Field(default=9450, ge=0, le=65535, description="Prometheus port; 0 disables.")
    metrics_host: str = Field(default="127.0.0.1", description="Prometheus listen address (0.0.0.0 in containers).")


class ProducerSettings(BaseSettings):
    """The sensor simulator. The live fields mirror `contracts.config.PipelineConfig`;
    these values apply until (and whenever) the API's configuration cannot be fetched."""

    model_config = _env("SENSORPIPE_PRODUCER_")

    rate: float = Field(default=5000.0, ge=0, le=1_000_000, description="Target events/s (all workers).")
    sensors: int = Field(default=1000, ge=1, le=100_000)
    duplicate_ratio: float = Field(default=0.0, ge=0, le=1)
    poison_ratio: float = Field(default=0.0, ge=0, le=1)
    burst_multiplier: float = Field(default=1.0, ge=1, le=100)
    burst_every_s: float = Field(default=0.0, ge=0)
    burst_duration_s: float = Field(default=0.0, ge=0)
    workers: int = Field(default=1, ge=1, le=64, description="Processes; each owns a fixed shard of sensors.")
    api_url: str | None = Field(default=None, description="Where to poll /api/producer-config; unset: flags only.")
    config_poll_s: float = Field(default=3.0, gt=0)
    metrics_port: int = Field(default=9300, ge=0, le=65535, description="Prometheus port; 0 disables.")
    metrics_host: str = Field(default="127.0.0.1", description="Prometheus listen address (0.0.0.0 in containers).")
    linger_ms: int = Field(default=20, ge=0, le=1000)
    compression: str = Field(
        default="lz4",
        pattern=r"^(none|lz4|zstd|snappy|gzip)$",
        description="Batch codec: lz4 by measurement (docs/decisions/002-producer-compression.md).",
    )
    queue_max_messages: int = Field(default=200_000, ge=1000, description="librdkafka queue bound (memory bound).")
    delivery_timeout_ms: int = Field(default=120_000, ge=1000, description="After this, a message is 'unknown'.")
    seed: int = Field(default=42, description="Signal shapes are reproducible per sensor.")
