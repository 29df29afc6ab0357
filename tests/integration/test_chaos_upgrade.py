"""An upgrade with live data: a store made by an earlier release, then the current code.

The earlier release is OLD_RELEASE, the last main before migration 012 (compacted days),
taken from the repository's history and run from its own source beside this checkout's
(same dependencies). Under load:
1. the store has the migrations up to OLD_MIGRATIONS, and the old release's consumer fills it;
2. it stops, and a backlog builds in Kafka;
3. the current `sensorpipe init` applies the rest of the migrations;
4. a current consumer and an old one share the group (a rolling upgrade), then the old one
   leaves and the current one drains the backlog;
5. the API (current code) serves readings stored by both releases, and the audit is clean.
`make test` runs the fast run, `make chaos` the full one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from sensorpipe.api.app import ApiConfig
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.storage.migrate import available, migrate

from .chaos_rig import FULL, RATE, Rig, assert_clean, wait_exit
from .conftest import REPO, Topics, api_config
from .helpers import scalar, wait_until

OLD_RELEASE = "b723d8736dee1727ed81235b9fe249992b1a2610"
OLD_MIGRATIONS = 11


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `src` folder of OLD_RELEASE, from the repository's history."""
    out = tmp_path_factory.mktemp("old-release")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_RELEASE, "src"], capture_output=True, check=False)
    assert archive.returncode == 0, (
        f"the upgrade scenario needs the earlier release {OLD_RELEASE[:12]} from the repository's history "
        f"(a full clone; `git fetch --unshallow` in a shallow one): {archive.stderr.decode().strip()}"
    )
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    migrations = sorted((out / "src" / "sensorpipe" / "storage" / "migrations").glob("*.sql"))
    assert int(migrations[-1].name[:3]) == OLD_MIGRATIONS
    return out / "src"


def _schema_version(dsn: str) -> int:
    return int(scalar(dsn, "SELECT max(version) FROM schema_migrations"))


def _ids_served(url: str, sensor: str, start: datetime, end: datetime) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"sensor_id": sensor, "start": start.isoformat(), "end": end.isoformat(), "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        r = httpx.get(f"{url}/api/readings", params=params, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        ids |= {d["event_id"] for d in body["data"]}
        if not (cursor := body["next_cursor"]):
            return ids


def test_upgrade_with_a_backlog_and_a_rolling_consumer(
    platform: Platform,
    topics: Topics,
    tmp_path: Path,
    old_release: Path,
    start_api: Callable[[ApiConfig], str],
) -> None:
    assert platform.pg is not None
    dsn = platform.pg.create_database(f"up_{uuid.uuid4().hex[:10]}")
    assert migrate(dsn, upto=OLD_MIGRATIONS)[-1] == OLD_MIGRATIONS
    rig = Rig("upgrade_with_a_backlog_and_a_rolling_consumer", topics, dsn, tmp_path)
    try:
        _upgrade(rig, old_release, start_api)
    finally:
        rig.kill_all()


def _upgrade(rig: Rig, old_release: Path, start_api: Callable[[ApiConfig], str]) -> None:
    rig.producer()
    old = rig.consumer(pythonpath=old_release, log="consumer-old")
    wait_until(lambda: rig.stored() > 3000, 60, "the old release to store")
    time.sleep(10 if FULL else 3)
    old.send_signal(signal.SIGTERM)
    assert wait_exit(old, 60, "the old consumer's stop") == 0
    upgraded_at = datetime.now(UTC)
    stored_by_old = rig.stored()
    time.sleep(20 if FULL else 8)  # the backlog builds
    backlog = rig.lag()
    assert backlog > 0
    out = subprocess.run([sys.executable, "-m", "sensorpipe", "init"], env=rig.env(), capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    latest = available()[-1].version
    assert _schema_version(rig.dsn) == latest
    new = rig.consumer()
    rolling = rig.consumer(pythonpath=old_release, log="consumer-old")
    t0 = time.monotonic()
    # both releases in the group, under load, until the backlog is down to a second of load
    wait_until(lambda: rig.lag() < RATE, 120, "the mixed group to drain the backlog", step=0.5)
    drained = round(time.monotonic() - t0, 1)
    time.sleep(20 if FULL else 5)
    assert new.poll() is None and rolling.poll() is None, "a consumer died in the mixed group"
    old_log = (rig.work / "consumer-old.log").read_text(errors="replace")
    assert old_log.count("assigned [") >= 2, "the old consumer got no partitions in the mixed group"
    rolling.send_signal(signal.SIGTERM)
    assert wait_exit(rolling, 60, "the old consumer's leave") == 0
    rig.figures.update(
        old_release=OLD_RELEASE[:12],
        migrations_before=OLD_MIGRATIONS,
        migrations_after=latest,
        stored_by_the_old_release=stored_by_old,
        backlog_at_upgrade=backlog,
        backlog_drained_after_s=drained,
    )
    report = rig.finish()
    assert_clean(report)
    _api_serves_both(rig, start_api, upgraded_at)


def _api_serves_both(rig: Rig, start_api: Callable[[ApiConfig], str], upgraded_at: datetime) -> None:
    """Readings of one sensor, as the current API serves them: every row stored, by either
    release, and some of each."""
    with psycopg.connect(rig.dsn) as conn:
        sensor = conn.execute("SELECT sensor_id FROM metrics LIMIT 1").fetchone()[0]  # type: ignore[index]
        rows = conn.execute("SELECT event_id, ingested_at FROM metrics WHERE sensor_id = %s", (sensor,)).fetchall()
        lo, hi = conn.execute("SELECT min(ts), max(ts) FROM metrics WHERE sensor_id = %s", (sensor,)).fetchone()  # type: ignore[misc]
    url = start_api(api_config(rig.dsn, rig.topics))
    served = _ids_served(url, sensor, lo, hi + timedelta(milliseconds=1))
    before = {e for e, at in rows if at < upgraded_at}
    after = {e for e, at in rows if at >= upgraded_at}
    assert before and after, "the sensor has no readings from one of the releases"
    assert served == before | after
