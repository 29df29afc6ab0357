"""The benchmark's peer, Kafka Connect with the Debezium JDBC sink, run for real against the
test's broker and PostgreSQL: it drains a topic into its table, sends converter errors to
its dead-letter topic, and stops on a row the database refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from sensorpipe.proof import peer
from sensorpipe.proof.measure import free_port, topic_end
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.storage import peer as sq

from .conftest import TEST_PG_PORT, Topics
from .helpers import make_events, produce, produce_events, wait_until


def _worker(platform: Platform, topics: Topics, dsn: str, home: Path) -> peer.Worker:
    assert platform.pg is not None
    db = urlsplit(dsn).path.lstrip("/")
    target = peer.Target(
        bootstrap=topics.settings.bootstrap(),
        topic=topics.main,
        jdbc_url=f"jdbc:postgresql://127.0.0.1:{TEST_PG_PORT}/{db}",
        user=platform.pg.settings.user,
        password=platform.pg.password(),
    )
    name = f"peer-{uuid.uuid4().hex[:6]}"
    return peer.Worker(home / name, target, peer.SinkPlan(tasks=1, unnest=True), free_port(), name)


def test_the_peer_drains_dead_letters_converter_errors_and_stops_on_a_refused_row(
    platform: Platform, topics: Topics, tmp_path: Path
) -> None:
    assert platform.pg is not None
    dsn = platform.pg.create_database(f"peer_{uuid.uuid4().hex[:8]}")
    today = datetime.now(UTC).date()
    sq.create_table(dsn, today - timedelta(days=1), today + timedelta(days=1))
    events = make_events(sensors=20, per_sensor=50)
    produce_events(platform.kafka_settings.bootstrap(), topics.main, events)
    bootstrap = topics.settings.bootstrap()
    produce(bootstrap, topics.main, [(b"sensor-00000", b'{"sensor_id": "sensor-00000", "value": ', None)])
    with _worker(platform, topics, dsn, tmp_path) as w, psycopg.connect(dsn, autocommit=True) as conn:
        w.wait_running()
        wait_until(lambda: sq.shape(dsn)[0] == len(events), 120, "the peer drained the topic")
        stored = {r[0] for r in conn.execute("SELECT event_id FROM peer_metrics")}
        assert stored == {e.event_id for e in events}
        dlq = w.target.dlq_topic
        wait_until(lambda: topic_end(bootstrap, dlq) == 1, 60, "the malformed JSON was dead-lettered")
        later = int((datetime.now(UTC) + timedelta(days=30)).timestamp() * 1000)
        ahead = make_events(sensors=1, per_sensor=1, ts_ms=later)  # no day partition holds it
        after = make_events(sensors=1, per_sensor=5)  # the same sensor: the same partition, after it
        produce_events(bootstrap, topics.main, ahead + after)
        wait_until(lambda: bool(w.failed_tasks()), 60, "the task failed on the row the database refused")
    assert sq.shape(dsn) == (len(events), len(events))  # neither that row nor those after it
    assert not sq.values_of(dsn, [e.event_id for e in ahead + after])
