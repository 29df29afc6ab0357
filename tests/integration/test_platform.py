"""The local platform: real broker, real PostgreSQL, the CLI's up/status/down lifecycle."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.kafka import LocalKafka, admin_client
from sensorpipe.runtime.postgres import HBA, LocalPostgres
from sensorpipe.runtime.procs import PlatformError, pid_alive
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.settings import DatabaseSettings, KafkaSettings
from sensorpipe.storage import migrate as migrate_mod

from .conftest import REPO, Topics


def test_bootstrap_creates_topics_with_twelve_partitions(platform: Platform) -> None:
    md = admin_client(platform.kafka_settings.bootstrap()).list_topics(timeout=10)
    assert len(md.topics["sensor_metrics"].partitions) == 12
    assert "sensor_metrics.dlq" in md.topics
    ensure_topics(platform.kafka_settings)  # idempotent
    assert (
        len(
            admin_client(platform.kafka_settings.bootstrap())
            .list_topics(timeout=10)
            .topics["sensor_metrics"]
            .partitions
        )
        == 12
    )


def test_topic_with_other_partition_count_is_refused(kafka_settings: KafkaSettings) -> None:
    name = f"wrong_{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka_settings.bootstrap())
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result()
    deadline = time.monotonic() + 10
    while name not in admin.list_topics(timeout=5).topics and time.monotonic() < deadline:
        time.sleep(0.1)  # metadata propagates asynchronously after create
    with pytest.raises(PlatformError, match="ordering"):
        ensure_topics(kafka_settings, topic=name, dlq_topic=f"{name}.dlq")
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 3  # untouched


def test_roundtrip_broker_to_database(topics: Topics, db_dsn: str) -> None:
    """Keyed messages go through the real broker and land in the real database."""
    boot = topics.settings.bootstrap()
    p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "acks": "all"})
    sent = {f"sensor-{i:05d}": i for i in range(50)}
    for key, i in sent.items():
        p.produce(topics.main, key=key, value=orjson.dumps({"i": i}))
    assert p.flush(30) == 0
    c = Consumer(
        {
            "bootstrap.servers": boot,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topics.main])
    got: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for m in c.consume(100, timeout=1.0):
            assert m.error() is None
            got[m.key().decode()] = orjson.loads(m.value())["i"]
    c.close()
    assert got == sent
    with psycopg.connect(db_dsn) as conn:
        conn.execute("SELECT sensorpipe_ensure_metrics_partitions(current_date, current_date)")
        now = datetime.now(UTC)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)"
                " VALUES (%s, %s, %s, %s, 0, 0, 0)",
                [(now, k, str(uuid.uuid4()), float(v)) for k, v in got.items()],
            )
        assert conn.execute("SELECT count(*), sum(value) FROM metrics").fetchone() == (
            50,
            float(sum(range(50))),
        )


def test_migrations_are_idempotent_and_append_only(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert migrate_mod.migrate(db_dsn) == []
    real = migrate_mod.available()
    edited = [migrate_mod.Migration(m.version, m.name, m.sql + "\n-- edited") for m in real]
    monkeypatch.setattr(migrate_mod, "available", lambda: edited)
    with pytest.raises(migrate_mod.MigrationError, match="changed after it was applied"):
        migrate_mod.migrate(db_dsn)


def _edge(today: date, days_back: int) -> datetime:
    """23:00 UTC on the day `days_back` days before today."""
    d = today - timedelta(days=days_back)
    return datetime(d.year, d.month, d.day, 23, tzinfo=UTC)


def test_daily_partitions_and_tiered_retention(db_dsn: str) -> None:
    today = datetime.now(UTC).date()
    keep = {"raw": 7, "1m": 30, "1h": 365}
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        created = conn.execute(
            "SELECT sensorpipe_ensure_metrics_partitions(%s, %s)",
            (today - timedelta(days=10), today + timedelta(days=1)),
        ).fetchone()
        assert created == (12,)
        assert conn.execute("SELECT sensorpipe_ensure_metrics_partitions(%s, %s)", (today, today)).fetchone() == (0,)
        # one row on each side of its tier's edge, in every table retention trims
        rows = {
            "metrics_1m": "INSERT INTO metrics_1m VALUES ('s', %s, 1, 1, 1, 1)",
            "metrics_1m_partition": "INSERT INTO metrics_1m_partition VALUES (0, %s, 1, 1, 1, 1)",
            "metrics_1h_partition": "INSERT INTO metrics_1h_partition VALUES (0, %s, 1, 1, 1, 1)",
            "metrics_1h": "INSERT INTO metrics_1h VALUES ('s', %s, 1, 1, 1, 1)",
            "retention_log": "INSERT INTO retention_log (dropped_at, day, reason, rows, bytes)"
            " VALUES (%s, '2000-01-01', 'time', 0, 0)",
        }
        tier = {"metrics_1m": "1m", "metrics_1m_partition": "1m", "metrics_1h_partition": "1h", "metrics_1h": "1h"}
        tier["retention_log"] = "1h"
        edges = {t: (_edge(today, keep[tier[t]] + 1), _edge(today, keep[tier[t]])) for t in rows}
        for t in edges["metrics_1m"]:  # the 1-minute rollups live in day partitions (migration 010)
            conn.execute("SELECT sensorpipe_ensure_minute_day(%s)", (t.date(),))
        for table, stmt in rows.items():
            for t in edges[table]:
                conn.execute(stmt, (t,))
        old, kept = _edge(today, 8), _edge(today, 7)
        for i, t in enumerate((old, kept)):
            conn.execute(
                "INSERT INTO processed_events (event_id, kafka_partition, kafka_offset, content_hash, event_ts)"
                " VALUES (%s, 0, %s, 0, %s)",
                (f"e{i}", i, t),
            )
            conn.execute(
                "INSERT INTO ignored_deliveries (kafka_partition, kafka_offset, event_id, kind, seen_at)"
                " VALUES (0, %s, %s, 'duplicate', %s)",
                (i, f"e{i}", t),
            )
        for i, t in enumerate((old, kept)):
            conn.execute(
                "INSERT INTO dead_letters (kafka_partition, kafka_offset, reason, detail, dead_at)"
                " VALUES (0, %s, 'malformed_json', '', %s)",
                (i, t),
            )
            conn.execute(
                "INSERT INTO event_conflicts (event_id, kafka_partition, kafka_offset, content_hash, stored_hash,"
                " seen_at) VALUES (%s, 0, %s, 1, 2, %s)",
                (f"e{i}", i, t),
            )
        edges["processed_events"] = edges["ignored_deliveries"] = (old, kept)
        edges["dead_letters"] = edges["event_conflicts"] = (old, kept)
        dropped = conn.execute(
            "SELECT sensorpipe_apply_tiered_retention(%s, %s, %s, %s)", (today, keep["raw"], keep["1m"], keep["1h"])
        ).fetchone()
        assert dropped == (3,)  # days today-10, -9, -8 are older than the 7-day window
        trimmed = {
            "metrics_1m": ("minute", "1m"),
            "metrics_1m_partition": ("minute", "1m"),
            "metrics_1h_partition": ("hour", "1h"),
            "metrics_1h": ("hour", "1h"),
            "processed_events": ("event_ts", "raw"),
            "ignored_deliveries": ("seen_at", "raw"),
            "retention_log": ("dropped_at", "1h"),
            "dead_letters": ("dead_at", "raw"),
            "event_conflicts": ("seen_at", "raw"),
        }
        listed = conn.execute("SELECT table_name::text, time_column::text, tier FROM retention_targets").fetchall()
        # metrics_1m is trimmed by dropping its day partitions (migration 010), not listed
        assert {t: (c, k) for t, c, k in listed} == {t: v for t, v in trimmed.items() if t != "metrics_1m"}
        for table, (col, _tier) in trimmed.items():
            only_edges = "day = '2000-01-01'" if table == "retention_log" else "true"  # not this run's drops
            got = [r[0] for r in conn.execute(f"SELECT {col} FROM {table} WHERE {only_edges}")]
            assert got == [edges[table][1]], table
        names = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metrics'"
            )
        }
        assert f"metrics_{(today - timedelta(days=7)):%Y%m%d}" in names
        assert f"metrics_{(today - timedelta(days=8)):%Y%m%d}" not in names
        # each time drop is logged, and the raw horizon follows the newest day dropped
        logged = conn.execute(
            "SELECT day, reason FROM retention_log WHERE day > '2001-01-01' AND tier = 'raw' ORDER BY day"
        ).fetchall()
        assert logged == [(today - timedelta(days=d), "time") for d in (10, 9, 8)]
        minute_days = conn.execute("SELECT day, reason FROM retention_log WHERE tier = '1m'").fetchall()
        assert minute_days == [(today - timedelta(days=keep["1m"] + 1), "time")]
        horizon = conn.execute("SELECT raw_horizon FROM retention_state").fetchone()
        assert horizon == (datetime.combine(today - timedelta(days=7), datetime.min.time(), tzinfo=UTC),)


def test_data_folder_from_another_version_is_refused(tmp_path: Path, platform: Platform) -> None:
    state = platform.state_dir / f"other-version-{uuid.uuid4().hex[:8]}"
    pg = LocalPostgres(DatabaseSettings(url=None, port=1), state)
    data = pg.data_dir()
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("9\n")
    (data / "keep.me").write_text("precious")
    with pytest.raises(PlatformError, match="PostgreSQL 9"):
        pg.init()
    assert (data / "keep.me").read_text() == "precious"
    shutil.rmtree(state)


def test_kafka_state_of_another_size_is_refused(platform: Platform) -> None:
    three = platform.kafka_settings.model_copy(update={"brokers": 3})
    with pytest.raises(PlatformError, match="1-broker cluster"):
        LocalKafka(three, platform.state_dir, three.libs_dir)._layout()


def test_port_in_use_names_the_port(tmp_path: Path, platform: Platform) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        pg = LocalPostgres(DatabaseSettings(url=None, port=port), tmp_path)
        with pytest.raises(PlatformError, match=f"port {port} .* in use"):
            pg.start()


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorpipe", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_missing_prerequisite_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": "/nonexistent",
        "SENSORPIPE_STATE_DIR": str(tmp_path / "s"),
        "SENSORPIPE_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
    }
    out = _cli("up", "--no-producer", "--no-api", "--consumers", "0", env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "install Java 17" in lines[0], out.stderr


def test_up_status_and_ctrl_c_leave_nothing_running(tmp_path: Path, platform: Platform) -> None:
    """The CLI lifecycle: `up` in the foreground, `status --json`, then SIGINT stops everything."""
    state = Path(str(platform.state_dir) + "-cli")
    env = {
        **os.environ,
        "SENSORPIPE_STATE_DIR": str(state),
        "SENSORPIPE_KAFKA_PORT": "29092",
        "SENSORPIPE_DATABASE_PORT": "57432",
        "SENSORPIPE_KAFKA_LIBS_DIR": str(REPO / ".cache/kafka/libs"),
    }
    env.pop("SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("SENSORPIPE_DATABASE_URL", None)
    _cli("down", "--purge", env=env)
    up = subprocess.Popen(
        [sys.executable, "-m", "sensorpipe", "up", "--no-producer", "--no-api", "--consumers", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        comps: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline and not (state / "run" / "ready").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            time.sleep(0.5)
        status = orjson.loads(_cli("status", "--json", env=env).stdout)
        comps = status["components"]
        assert set(comps) == {"kafka", "postgres"}
        # the disk budget: each component's use against its share, inside the budget
        disk = status["disk"]
        shares = {k: v["share_bytes"] for k, v in disk["components"].items()}
        assert set(shares) == {"kafka", "postgres", "logs"} and sum(shares.values()) == disk["budget_bytes"]
        assert disk["components"]["postgres"]["used_bytes"] > 0 and disk["free_bytes"] > disk["floor_bytes"]
        assert comps["kafka"]["state"] == "running" and comps["kafka"]["address"] == "127.0.0.1:29092"
        assert str(comps["postgres"]["address"]).startswith("postgresql://")
        pids = [int(str(c["pid"])) for c in comps.values()]
        assert all(pid_alive(p) for p in pids)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0
        printed = up.stdout.read().decode() if up.stdout else ""
        assert "disk budget" in printed and "free-space floor" in printed, printed
        secret = (state / "postgres" / "pgpass").read_text().strip().rsplit(":", 1)[1]
        assert secret not in printed and secret not in str(status)  # the password file is named, never read out
        assert not any(pid_alive(p) for p in pids)
        assert orjson.loads(_cli("status", "--json", env=env).stdout)["components"] == {}
        # State survived: the next `up` reuses the formatted Kafka and the initialised cluster.
        assert (state / "kafka" / "layout.json").is_file()
    finally:
        if up.poll() is None:
            up.kill()
        _cli("down", "--purge", env=env)


def test_the_local_cluster_asks_every_client_for_the_password(platform: Platform, db_dsn: str) -> None:
    """scram-sha-256 on loopback: without the password file, or with a wrong password, no
    connection; the file is the owner's alone; setting the password again changes nothing."""
    pg = platform.pg
    assert pg is not None
    assert stat.S_IMODE(pg.passfile.stat().st_mode) == 0o600
    assert (pg.data_dir() / "pg_hba.conf").read_text() == HBA
    bare = db_dsn.split("?", 1)[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bare.replace("sensorpipe@", "sensorpipe:wrong@"), connect_timeout=5)
    before = pg.passfile.read_text()
    pg.require_password(pg.data_dir())
    assert pg.passfile.read_text() == before
    with psycopg.connect(db_dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("sensorpipe",)
