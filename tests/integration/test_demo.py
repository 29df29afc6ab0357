"""The demo scenarios and the audit, end to end on the real broker and database (short runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from sensorpipe.runtime.supervisor import Platform
from sensorpipe.storage.audit import order_violations

from .conftest import Topics
from .helpers import make_events, produce_events, scalar


def _env(platform: Platform, topics: Topics, dsn: str, tmp: Path) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        **os.environ,
        "SENSORPIPE_STATE_DIR": str(platform.state_dir.parent / f"demo-{uuid.uuid4().hex[:8]}"),
        "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": topics.settings.bootstrap(),
        "SENSORPIPE_KAFKA_TOPIC": topics.main,
        "SENSORPIPE_KAFKA_DLQ_TOPIC": topics.dlq,
        "SENSORPIPE_DATABASE_URL": dsn,
        "SENSORPIPE_CONSUMER_GROUP_ID": f"g-demo-{uuid.uuid4().hex[:8]}",
        "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
        "SENSORPIPE_API_PORT": str(port),
    }


def _demo(env: dict[str, str], tmp: Path, *args: str) -> tuple[int, dict[str, object], str]:
    out = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "demo", *args, "--out", str(tmp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    report = orjson.loads((tmp / f"demo-{args[0]}.json").read_bytes())
    assert (tmp / f"demo-{args[0]}.png").stat().st_size > 10_000  # the chart was drawn
    return out.returncode, report, out.stdout + out.stderr


def _disorder_elsewhere(dsn: str) -> None:
    """Another producer's input, stored before the demo: one sensor's seq goes backwards."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT sensorpipe_ensure_metrics_partitions(%s, %s)", (now.date(), now.date()))
        for i, seq in enumerate((5, 3, 4)):
            conn.execute(
                "INSERT INTO metrics (ts, sensor_id, event_id, value, seq, kafka_partition, kafka_offset)"
                " VALUES (%s, 'elsewhere-1', %s, 1.0, %s, 0, %s)",
                (now, f"elsewhere-{uuid.uuid4()}", seq, i),
            )
        assert order_violations(conn) == 1


def test_duplicates_demo_ignores_exactly_the_resent_events(
    platform: Platform, topics: Topics, db_dsn: str, tmp_path: Path
) -> None:
    """Also: the demo judges only its own events, on a store that already held another
    producer's disorder (which the whole-store audit still finds)."""
    _disorder_elsewhere(db_dsn)
    code, r, output = _demo(
        _env(platform, topics, db_dsn, tmp_path),
        tmp_path,
        "duplicates",
        "--duration",
        "10s",
        "--rate",
        "1000",
        "--sensors",
        "100",
    )
    assert code == 0, output[-3000:]
    assert r["violations"] == []
    assert int(str(r["acked"])) > 5000 and r["stored"] == r["acked"]
    assert int(str(r["duplicates_sent"])) > 0 and r["duplicates_ignored"] == r["duplicates_sent"]
    assert (r["lost"], r["duplicate_rows"], r["order_violations"]) == (0, 0, 0)
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM processed_events").fetchone()
    assert row is not None and row[0] == row[1] == r["stored"]
    with psycopg.connect(db_dsn) as conn:
        assert order_violations(conn) == 1


def test_slowdown_demo_builds_lag_then_drains_with_nothing_lost(
    platform: Platform, topics: Topics, db_dsn: str, tmp_path: Path
) -> None:
    code, r, output = _demo(
        _env(platform, topics, db_dsn, tmp_path),
        tmp_path,
        "slowdown",
        "--duration",
        "20s",
        "--rate",
        "1500",
        "--sensors",
        "100",
    )
    assert code == 0, output[-3000:]
    assert int(str(r["max_lag"])) >= 1500  # the backlog was visible
    assert r["drain_seconds"] is not None and r["lost"] == 0 and r["duplicate_rows"] == 0
    series = r["series"]
    assert isinstance(series, list) and any(p["slowed"] for p in series) and series[-1]["lag"] == 0


def test_audit_tells_loss_in_the_consumer_from_loss_in_kafka(
    platform: Platform, topics: Topics, db_dsn: str, tmp_path: Path
) -> None:
    from sensorpipe.consumer.metrics import ConsumerMetrics
    from sensorpipe.consumer.service import ConsumerService
    from sensorpipe.proof.audit import audit
    from sensorpipe.settings import ConsumerSettings, DatabaseSettings

    events = make_events(20, 10)
    produce_events(topics.settings.bootstrap(), topics.main, events)
    svc = ConsumerService(
        topics.settings,
        ConsumerSettings(group_id=f"g-{uuid.uuid4().hex[:8]}", metrics_port=0),
        DatabaseSettings(url=db_dsn),
        ConsumerMetrics(),
    )
    svc.start()
    deadline = time.monotonic() + 60
    while int(scalar(db_dsn, "SELECT count(*) FROM processed_events")) < len(events) and time.monotonic() < deadline:
        svc.step()
    svc.close()
    assert int(scalar(db_dsn, "SELECT count(*) FROM processed_events")) == len(events)
    ledger = tmp_path / "ledger.csv"
    never_written = str(uuid.uuid4())
    ledger.write_text("".join(f"e,{e.event_id},acked\n" for e in events) + f"e,{never_written},acked\n")
    clean = audit(db_dsn, topics.settings.bootstrap(), topics.main, [ledger])
    assert clean.lost == 1 and clean.lost_in_kafka == 1 and clean.lost_in_consumer == 0  # the fake id
    # Now lose two stored events behind the consumer's back: the audit must find them on the topic.
    gone = [events[3].event_id, events[7].event_id]
    with psycopg.connect(db_dsn) as conn:
        conn.execute("DELETE FROM processed_events WHERE event_id = ANY(%s)", (gone,))
    report = audit(db_dsn, topics.settings.bootstrap(), topics.main, [ledger])
    assert report.lost == 3 and report.lost_in_consumer == 2 and report.lost_in_kafka == 1
    assert any("not stored" in a for a in report.anomalies)
