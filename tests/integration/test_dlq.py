"""`sensorpipe dlq` against the session's broker and PostgreSQL, with a real consumer.

A consumer whose window admits one minute ahead dead-letters events stamped ten minutes
ahead, and a message that is not JSON (not UTF-8 either). The dead letters carry their
position on the dead-letter topic; `list` and `show` read them back; a redrive, once the
consumer admits a day ahead again, produces the events back (the broken one stays), a second
redrive changes nothing, and the audit counts the redriven events as accounted for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Message, Producer

from sensorpipe.api.app import ApiConfig
from sensorpipe.contracts import events as ev
from sensorpipe.dlq import payload
from sensorpipe.dlq.main import redrive_dead
from sensorpipe.dlq.redrive import Redrive, window
from sensorpipe.proof.audit import audit
from sensorpipe.proof.measure import topic_end
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import deadletters as store

from .conftest import Topics, api_config
from .helpers import Ev, make_events, produce, scalar, wait_until

BROKEN = b"\xff\xfe{not json"


def _env(topics: Topics, dsn: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": topics.settings.bootstrap(),
        "SENSORPIPE_KAFKA_TOPIC": topics.main,
        "SENSORPIPE_KAFKA_DLQ_TOPIC": topics.dlq,
        "SENSORPIPE_DATABASE_URL": dsn,
        "SENSORPIPE_STATE_DIR": str(tmp),
        "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
        "SENSORPIPE_CONSUMER_GROUP_ID": f"dlq-{uuid.uuid4().hex[:8]}",
        **extra,
    }


def _consumer(env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    log = open(tmp / "consumer.log", "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen([sys.executable, "-m", "sensorpipe", "consumer"], env=env, stdout=log, stderr=log)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sensorpipe", "dlq", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def _ledger(tmp: Path, good: list[Ev], ahead: list[Ev]) -> Path:
    """What a producer's ledger says of this load: the good events, and the ones ten minutes
    ahead as the deliberate poison they were sent as (labelled with the reason they get)."""
    path = tmp / "ledger.csv"
    lines = [f"e,{e.event_id},acked,{ev.iso_millis(e.ts_ms)}" for e in good]
    lines += [f"p,{ev.Reason.TIMESTAMP_OUT_OF_WINDOW.value},acked" for _ in ahead]
    lines += [f"p,{ev.Reason.NOT_UTF8.value},acked"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dead_letters_are_listed_shown_and_redriven(
    topics: Topics, db_dsn: str, tmp_path: Path, start_api: Callable[[ApiConfig], str]
) -> None:
    good = make_events(4, 50)
    ahead = make_events(2, 5, ts_ms=good[0].ts_ms + 600_000)  # ten minutes ahead
    poison = [(ev.H_POISON, ev.Reason.TIMESTAMP_OUT_OF_WINDOW.value.encode())]
    msgs = [(e.sensor_id.encode(), e.encode(), None) for e in good]
    msgs += [(e.sensor_id.encode(), e.encode(), poison) for e in ahead]
    msgs += [(b"sensor-00000", BROKEN, [(ev.H_POISON, ev.Reason.NOT_UTF8.value.encode())])]
    produce(topics.settings.bootstrap(), topics.main, msgs)
    narrow = _env(topics, db_dsn, tmp_path, SENSORPIPE_CONSUMER_FUTURE_WINDOW_S="60")
    consumer = _consumer(narrow, tmp_path)
    try:
        wait_until(lambda: scalar(db_dsn, "SELECT count(*) FROM dead_letters") == len(ahead) + 1, 60, "dead letters")
        wait_until(lambda: scalar(db_dsn, "SELECT count(*) FROM metrics") == len(good), 60, "the good events")
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
    _list_and_show(narrow, db_dsn)
    _redrive(topics, db_dsn, tmp_path, good, ahead)
    _served(start_api(api_config(db_dsn, topics)), db_dsn, ahead)


def _served(url: str, dsn: str, ahead: list[Ev]) -> None:
    """The API's dead letters and event lookup over what the test left."""
    page = httpx.get(f"{url}/api/dead-letters", params={"reason": "not_utf8"}, timeout=10).json()
    (broken,) = page["data"]
    assert {r["reason"]: r["count"] for r in page["reasons"]} == {"timestamp_out_of_window": len(ahead), "not_utf8": 1}
    detail = httpx.get(f"{url}/api/dead-letters/{broken['partition']}/{broken['offset']}", timeout=30).json()
    assert detail["value"]["text"] is None and detail["value"]["hex"] == BROKEN.hex()
    reason = {"name": "sensorpipe.reason", "value": {"text": "not_utf8", "hex": b"not_utf8".hex(), "size": 8}}
    assert reason in detail["headers"]
    redriven = httpx.get(f"{url}/api/dead-letters", params={"reason": "timestamp_out_of_window"}, timeout=10).json()
    assert {d["redriven_event_id"] for d in redriven["data"]} == {e.event_id for e in ahead}
    found = httpx.get(f"{url}/api/events/{ahead[0].event_id}", timeout=10).json()
    assert found["reading"]["seq"] == ahead[0].seq
    assert [c["kind"] for c in found["ignored"]] == ["duplicate"]  # the second redrive's copy
    line = httpx.get(f"{url}/api/dead-letters/timeline", params={"hours": 2}, timeout=10).json()
    assert line["step_s"] == 60 and len(line["at"]) == 120 and line["at"] == sorted(line["at"])
    assert {r: sum(c) for r, c in line["counts"].items()} == {"timestamp_out_of_window": len(ahead), "not_utf8": 1}
    assert all(len(c) == len(line["at"]) for c in line["counts"].values())
    assert sum(line["counts"]["not_utf8"][-10:]) == 1, "dead-lettered minutes ago: in the last buckets"
    bad = ("/api/dead-letters/timeline?hours=0", "/api/dead-letters/timeline?hours=100000")
    for path, code in (
        ("/api/dead-letters/3/999999", 404),
        ("/api/dead-letters?reason=bogus", 422),
        *((b, 422) for b in bad),
    ):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == code, path


def _list_and_show(env: dict[str, str], dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        dead = store.page(conn)
    assert all(d.dlq_partition is not None and d.dlq_offset is not None for d in dead)
    listed = _cli(env, "list", "--reason", "not_utf8", "--since", "1h")
    assert listed.returncode == 0, listed.stderr
    assert "by reason: timestamp_out_of_window 10, not_utf8 1" in listed.stdout
    (broken,) = [d for d in dead if d.reason == "not_utf8"]
    shown = _cli(env, "show", f"{broken.kafka_partition}@{broken.kafka_offset}")
    assert shown.returncode == 0, shown.stderr
    assert "00000000  ff fe 7b 6e 6f 74" in shown.stdout  # not UTF-8: a hex view of the original
    assert "header sensorpipe.reason: not_utf8" in shown.stdout
    missing = _cli(env, "show", "11@999999")
    assert missing.returncode == 1
    for bad in (["list", "--since", "yesterday"], ["show", "x"], ["redrive", "--limit", "0"]):
        out = _cli(env, *bad)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("sensorpipe: error:"), out.stderr


def _redrive(topics: Topics, dsn: str, tmp: Path, good: list[Ev], ahead: list[Ev]) -> None:
    wide = _env(topics, dsn, tmp)  # the consumer admits a day ahead again
    db, kafka, consumer_settings = DatabaseSettings(url=dsn), topics.settings, ConsumerSettings()
    end = topic_end(topics.settings.bootstrap(), topics.main)
    dry = redrive_dead(db, kafka, consumer_settings, None, None, 100, dry_run=True)
    assert sorted(o.verdict for o in dry) == ["passes"] * len(ahead) + ["still poison"]
    assert topic_end(topics.settings.bootstrap(), topics.main) == end, "a dry run produced something"
    with psycopg.connect(dsn) as conn:
        before = store.page(conn)  # as a redrive that died before marking them would have seen them
    done = redrive_dead(db, kafka, consumer_settings, None, None, 100, dry_run=False)
    assert sorted(o.verdict for o in done) == ["redriven"] * len(ahead) + ["still poison"]
    consumer = _consumer(wide, tmp)
    try:
        total = len(good) + len(ahead)
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM metrics") == total, 60, "the redriven events")
        again = redrive_dead(db, kafka, consumer_settings, None, None, 100, dry_run=False)
        assert [o.verdict for o in again] == ["still poison"]  # the redriven ones are done
        _resend(dsn, kafka, consumer_settings, before)
        wait_until(lambda: _ignored(dsn) >= len(ahead), 60, "the second copies to be ignored")
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
    assert scalar(dsn, "SELECT count(*) FROM metrics") == len(good) + len(ahead)
    report = audit(dsn, topics.settings.bootstrap(), topics.main, [_ledger(tmp, good, ahead)])
    assert (report.lost, report.phantom, report.poison_missing) == (0, 0, 0), report.as_dict()


def _resend(dsn: str, kafka: KafkaSettings, consumer: ConsumerSettings, before: list[store.StoredDeadLetter]) -> None:
    """Redrive the same dead letters again, as if the first redrive had died after producing."""
    r = Redrive(
        lambda p, o: payload.read(kafka.client_config(), kafka.dlq_topic, p, o),
        ev.EventDecoder(consumer.max_message_bytes),
        window(7 * 86_400, consumer.future_window_s),
    )
    with psycopg.connect(dsn) as conn:
        sent = r.run(conn, before, Producer(kafka.client_config()), kafka.topic, dry_run=False)
    assert sum(o.verdict == "redriven" for o in sent) == len(before) - 1


def _ignored(dsn: str) -> int:
    return int(scalar(dsn, "SELECT coalesce(sum(duplicates), 0) FROM ingest_counters"))


def test_originals_are_read_back_by_position_and_missing_ones_are_refused(topics: Topics) -> None:
    """One long-lived reader returns each message by its position, in any order; a position
    past its partition's end, or on a partition the topic lacks, is refused with the reason."""
    at: dict[bytes, tuple[int, int]] = {}

    def done(err: object, m: Message) -> None:
        assert err is None, err
        at[m.key() or b""] = (m.partition() or 0, m.offset() or 0)

    p = Producer(topics.settings.client_config())
    for i in range(24):
        p.produce(topics.dlq, key=b"k%d" % i, value=b"v%d" % i, headers=[("n", b"%d" % i)], on_delivery=done)
    assert p.flush(30) == 0
    reader = payload.Reader(topics.settings.client_config(), topics.dlq)
    try:
        for key in sorted(at, reverse=True):
            o = reader.read(*at[key])
            assert (o.key, o.value, o.headers) == (key, b"v" + key[1:], [("n", key[1:])])
        partition, last = max(at.values())
        with pytest.raises(payload.PayloadError, match=f"the partition ends at {last + 1}"):
            reader.read(partition, last + 1)
        with pytest.raises(payload.PayloadError, match="could not read"):
            reader.read(topics.settings.partitions + 5, 0)
    finally:
        reader.close()
