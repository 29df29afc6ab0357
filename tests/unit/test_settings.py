"""Settings and launcher configuration: pure functions, no I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorpipe.runtime.kafka import LocalKafka, new_cluster_id
from sensorpipe.runtime.postgres import listen_addresses
from sensorpipe.settings import (
    AdminSettings,
    ApiSettings,
    ConsumerSettings,
    DatabaseSettings,
    DiskSettings,
    KafkaSettings,
    ProducerSettings,
    redact_dsn,
)
from sensorpipe.storage.writer import silence_limits


def test_local_bootstrap_lists_every_node() -> None:
    assert KafkaSettings(bootstrap_servers=None).bootstrap() == "127.0.0.1:9092"
    three = KafkaSettings(bootstrap_servers=None, brokers=3, port=19092)
    assert three.bootstrap() == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert three.replication_factor() == 3


def test_external_cluster_means_no_local_broker() -> None:
    s = KafkaSettings(bootstrap_servers="kafka-1:9092")
    assert not s.local and s.bootstrap() == "kafka-1:9092"


def test_database_url_overrides_local_cluster(tmp_path: Path) -> None:
    no_file = tmp_path / "absent"
    assert (
        DatabaseSettings(url=None, port=5555, passfile=no_file).dsn()
        == "postgresql://sensorpipe@127.0.0.1:5555/sensorpipe"
    )
    ext = DatabaseSettings(url="postgresql://u:secret@db:5432/x")
    assert not ext.local and ext.dsn().endswith("@db:5432/x")
    assert "secret" not in repr(ext)


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORPIPE_API_PORT", "9999")
    monkeypatch.setenv("SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS", "b:1")
    assert ApiSettings().port == 9999
    assert KafkaSettings().bootstrap() == "b:1"


@pytest.mark.parametrize("bad", [{"port": 0}, {"brokers": 0}, {"heap": "lots"}])
def test_bad_kafka_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(**bad)  # type: ignore[arg-type]


def test_cors_wildcard_is_rejected() -> None:
    with pytest.raises(ValidationError, match="explicitly"):
        ApiSettings(cors_origins=["*"])


def test_loopback_detection() -> None:
    assert ApiSettings(host="127.0.0.1").is_loopback()
    assert ApiSettings(host="localhost").is_loopback()
    assert not ApiSettings(host="0.0.0.0").is_loopback()


def test_cluster_id_is_kafka_uuid_text() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", new_cluster_id())
    # One random id in 64 would start with "-", which the storage tool reads as an option.
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))


def test_three_node_properties_replicate() -> None:
    s = KafkaSettings(bootstrap_servers=None, brokers=3, port=19092)
    props = LocalKafka(s, Path("/state"), Path("/libs")).server_properties(2)
    kv = dict(line.split("=", 1) for line in props.splitlines())
    assert kv["node.id"] == "2"
    assert kv["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert kv["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert kv["default.replication.factor"] == "3"
    assert kv["min.insync.replicas"] == "2"
    assert kv["auto.create.topics.enable"] == "false"


def test_brokers_listen_on_and_advertise_another_host() -> None:
    s = KafkaSettings(bootstrap_servers=None, host="10.231.7.1", port=39092)
    kv = dict(
        line.split("=", 1) for line in LocalKafka(s, Path("/state"), Path("/libs")).server_properties(1).splitlines()
    )
    assert kv["listeners"] == "PLAINTEXT://10.231.7.1:39092,CONTROLLER://10.231.7.1:39093"
    assert kv["advertised.listeners"] == "PLAINTEXT://10.231.7.1:39092"
    assert kv["controller.quorum.voters"] == "1@10.231.7.1:39093"
    assert s.bootstrap() == "10.231.7.1:39092"
    with pytest.raises(ValidationError, match="IPv4"):
        KafkaSettings(host="broker.example")


def test_postgres_listens_also_on_another_address() -> None:
    assert listen_addresses(DatabaseSettings(port=56632)) == "127.0.0.1"
    assert listen_addresses(DatabaseSettings(port=56632, listen_also="10.231.7.1")) == "127.0.0.1,10.231.7.1"
    with pytest.raises(ValidationError, match="IPv4"):
        DatabaseSettings(listen_also="*")


def test_a_silent_database_connection_times_out() -> None:
    limits = silence_limits(15_000)
    assert limits["tcp_user_timeout"] == 15_000
    # idle wait: the first probe and its unanswered retries end within the timeout
    assert limits["keepalives_idle"] + limits["keepalives_interval"] * limits["keepalives_count"] <= 15
    assert silence_limits(2_000)["keepalives_idle"] >= 1


def test_consumer_poll_interval_must_cover_the_session() -> None:
    with pytest.raises(ValidationError, match="max_poll_interval_ms"):
        ConsumerSettings(session_timeout_ms=30_000, max_poll_interval_ms=10_000)
    ok = ConsumerSettings(session_timeout_ms=6_000, max_poll_interval_ms=10_000)
    assert ok.failpoint is None  # fault injection is off unless asked for


def test_consumer_failpoint_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORPIPE_CONSUMER_FAILPOINT", "after_db_commit")
    assert ConsumerSettings().failpoint == "after_db_commit"
    monkeypatch.setenv("SENSORPIPE_CONSUMER_FAILPOINT", "somewhere")
    with pytest.raises(ValidationError, match="failpoint"):
        ConsumerSettings()


def test_env_example_lists_every_setting() -> None:
    """`.env.example` is the settings reference: each variable appears, set or commented."""
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?(SENSORPIPE_[A-Z0-9_]+)=", text, re.M))
    wanted = set()
    for cls in (
        AdminSettings,
        ApiSettings,
        ConsumerSettings,
        DatabaseSettings,
        DiskSettings,
        KafkaSettings,
        ProducerSettings,
    ):
        prefix = cls.model_config.get("env_prefix", "")
        wanted |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    assert wanted - listed == set()


def test_the_local_clusters_password_file_is_named_never_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "pgpass").write_text("127.0.0.1:*:*:sensorpipe:s3cret\n")
    monkeypatch.setenv("SENSORPIPE_STATE_DIR", str(tmp_path))
    dsn = DatabaseSettings().dsn()
    assert dsn == f"postgresql://sensorpipe@127.0.0.1:55432/sensorpipe?passfile={tmp_path / 'postgres' / 'pgpass'}"
    assert "s3cret" not in dsn
    assert "passfile" not in DatabaseSettings(host="db.example", port=5432).dsn()  # not the local cluster
    assert "passfile" not in DatabaseSettings(password="given").dsn()  # a given password wins


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:s%40cret@db:5432/x?sslmode=require", "postgresql://u:***@db:5432/x?sslmode=require"),
        ("postgres://u@db/x?password=s3cret&passfile=/p", "postgres://u@db/x?password=***&passfile=/p"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("host=db password='s3 cret' user=u", "host=db password=*** user=u"),
        ("host=db password=s3cret user=u", "host=db password=*** user=u"),
    ],
)
def test_a_shown_connection_string_has_no_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert DatabaseSettings(url=dsn).shown() == shown
    assert DatabaseSettings(password="p@ss word").shown() == "postgresql://sensorpipe:***@127.0.0.1:55432/sensorpipe"
