"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real
stack: Kafka and PostgreSQL of the test session, plus a consumer, a producer and the API that
`sensorpipe up --detach` starts. A missing browser or build is a failure, never a skip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from sensorpipe.contracts.events import encode_event, iso_millis
from sensorpipe.runtime.supervisor import Platform

from .conftest import REPO, Topics
from .helpers import produce, scalar, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poison_and_duplicate(topics: Topics, dsn: str) -> dict[str, str]:
    """A poison message with a mark of its own, and an event sent twice; returns what the
    browser tests look for, once the consumer has dead-lettered the one and stored the other."""
    mark = f"e2e-{uuid.uuid4().hex[:8]}"
    event_id = str(uuid.uuid4())
    value = encode_event("sensor-e2e", event_id, int(time.time() * 1000), 42.5, 0)
    poison = b'{"sensor_id": "sensor-e2e", "note": "' + mark.encode() + b'" not json'
    msgs = [(b"sensor-e2e", poison, None), (b"sensor-e2e", value, None), (b"sensor-e2e", value, None)]
    produce(topics.settings.bootstrap(), topics.main, msgs)
    wait_until(
        lambda: scalar(dsn, "SELECT count(*) FROM dead_letters WHERE reason = 'malformed_json'") == 1, 60, "the poison"
    )
    wait_until(
        lambda: scalar(dsn, "SELECT count(*) FROM ignored_deliveries WHERE event_id = %s", (event_id,)) == 1,
        60,
        "the duplicate",
    )
    # A sensor that sends four times, a second apart, then stops: it turns late, then silent.
    for seq in range(4):
        quiet = encode_event("sensor-quiet", str(uuid.uuid4()), int(time.time() * 1000), 1.0, seq)
        produce(topics.settings.bootstrap(), topics.main, [(b"sensor-quiet", quiet, None)])
        time.sleep(1)
    events = "SELECT coalesce(max(events), 0) FROM sensor_stats WHERE sensor_id = 'sensor-quiet'"
    wait_until(lambda: scalar(dsn, events) == 4, 60, "the quiet sensor's events")
    return {
        "E2E_POISON_MARK": mark,
        "E2E_EVENT_ID": event_id,
        "E2E_QUIET_SENSOR": "sensor-quiet",
        **_sensor_with_a_gap(topics, dsn),
    }


def _sensor_with_a_gap(topics: Topics, dsn: str) -> dict[str, str]:
    """A sensor with readings every 2 s over the first and last thirds of a 9-minute range,
    and none in the middle third: the chart must break there. Its seq skips the 90 readings
    of the middle third, one seq gap for its page to show."""
    end_ms = int(time.time() * 1000) // 1000 * 1000
    start_ms = end_ms - 9 * 60_000
    middle = range(start_ms + 180_000, start_ms + 360_000)
    msgs = [
        (b"sensor-gap", encode_event("sensor-gap", str(uuid.uuid4()), t, 50.0 + (seq % 7), seq), None)
        for seq, t in enumerate(range(start_ms, end_ms, 2000))
        if t not in middle
    ]
    produce(topics.settings.bootstrap(), topics.main, msgs)
    stored = "SELECT coalesce(max(events), 0) FROM sensor_stats WHERE sensor_id = 'sensor-gap'"
    wait_until(lambda: scalar(dsn, stored) == len(msgs), 60, "the gapped sensor's events")
    return {"E2E_GAP_SENSOR": "sensor-gap", "E2E_GAP_START": iso_millis(start_ms), "E2E_GAP_END": iso_millis(end_ms)}


def test_dashboard_end_to_end_in_chromium(platform: Platform, topics: Topics, db_dsn: str) -> None:
    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    assert Path(chromium).is_file(), f"no Chromium at {chromium}: `make setup` installs Debian's chromium"
    out_dir = REPO / "dashboard" / "out"
    assert (out_dir / "index.html").is_file(), "the dashboard is not built: run `make setup`"
    assert shutil.which("npx"), "npx (Node.js 20) is required for the browser tests"

    # `make screenshots` points this at docs/screenshots, where the README's are kept
    shots_dir = Path(os.environ.get("SENSORPIPE_E2E_SCREENSHOTS", str(REPO / "artifacts" / "e2e")))
    state = platform.state_dir.parent / f"e2e-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {
        **os.environ,
        "SENSORPIPE_STATE_DIR": str(state),
        "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": topics.settings.bootstrap(),
        "SENSORPIPE_KAFKA_TOPIC": topics.main,
        "SENSORPIPE_KAFKA_DLQ_TOPIC": topics.dlq,
        "SENSORPIPE_DATABASE_URL": db_dsn,
        "SENSORPIPE_CONSUMER_GROUP_ID": f"g-e2e-{uuid.uuid4().hex[:8]}",
        "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
        "SENSORPIPE_PRODUCER_METRICS_PORT": "0",
        "SENSORPIPE_API_PORT": str(port),
        "SENSORPIPE_API_DASHBOARD_DIR": str(out_dir),
    }
    up = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "up", "--detach", "--rate", "500", "--sensors", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    try:
        status = orjson.loads(
            subprocess.run(
                [sys.executable, "-m", "sensorpipe", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["components"]
        assert {"api", "consumer-0", "producer"} <= set(status), status
        marks = _poison_and_duplicate(topics, db_dsn)
        started = time.time()
        run = subprocess.run(
            ["npx", "playwright", "test"],
            cwd=REPO / "dashboard",
            env={
                **env,
                "BASE_URL": f"http://127.0.0.1:{port}",
                "API_PID": str(status["api"]["pid"]),
                "CHROMIUM_PATH": chromium,
                "E2E_SCREENSHOTS": str(shots_dir),
                **marks,
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        shots = {p.name for p in shots_dir.glob("*.png") if p.stat().st_mtime >= started}  # this run's
        assert {"overview.png", "explorer.png", "sensors.png", "kafka.png", "config.png"} <= shots
        assert {"deadletters.png", "events.png", "overview-dark.png", "sensors-silent.png"} <= shots
        assert {"overview-alarms.png", "explorer-gap.png", "sensor.png"} <= shots
    finally:
        subprocess.run(
            [sys.executable, "-m", "sensorpipe", "down", "--purge"],
            env=env,
            capture_output=True,
            timeout=180,
            check=False,
        )
