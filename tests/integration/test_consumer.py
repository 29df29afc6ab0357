"""The consumer against the real broker and the real database: idempotency, DLQ, crashes,
database outages, scale-out and day partitions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.parts import AUTO_COMMIT_INTERVAL_MS
from sensorpipe.consumer.service import ConsumerService
from sensorpipe.contracts import events as ev
from sensorpipe.runtime.kafka import admin_client
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.settings import ConsumerSettings, DatabaseSettings

from .conftest import Topics
from .helpers import Ev, consume_all, make_events, produce, produce_events, scalar, wait_until

Factory = Callable[..., ConsumerService]


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_consumer(topics: Topics, db_dsn: str, group: str) -> Iterator[Factory]:
    made: list[ConsumerService] = []

    def factory(**overrides: object) -> ConsumerService:
        settings = ConsumerSettings.model_validate(
            {"group_id": group, "batch_wait_ms": 100, "metrics_port": 0, "retry_max_s": 2.0, **overrides}
        )
        svc = ConsumerService(topics.settings, settings, DatabaseSettings(url=db_dsn), ConsumerMetrics())
        svc.start()
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        with contextlib.suppress(RuntimeError):  # already closed by the test
            svc.close()


def drain(svc: ConsumerService, pred: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc.step()
        if pred():
            return
    raise AssertionError("consumer did not reach the expected state in time")


def stored(dsn: str) -> int:
    return int(scalar(dsn, "SELECT count(*) FROM metrics"))


def committed(topics: Topics, group: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": topics.settings.bootstrap(), "group.id": group})
    try:
        tps = c.committed([TopicPartition(topics.main, p) for p in range(12)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}  # -1001: nothing committed yet


def end_offsets(topics: Topics) -> dict[int, int]:
    """Each partition's end offset (the offset its next message will get) on the main topic."""
    c = Consumer({"bootstrap.servers": topics.settings.bootstrap(), "group.id": "ends"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topics.main, p), timeout=10)[1] for p in range(12)}
    finally:
        c.close()


def test_same_event_three_times_is_stored_once(topics: Topics, db_dsn: str, make_consumer: Factory) -> None:
    boot = topics.settings.bootstrap()
    e = make_events(1, 1)[0]
    other = make_events(3, 5)
    # twice in what will be one batch, then once more in a later batch
    produce_events(boot, topics.main, [e, *other, e])
    svc = make_consumer()
    drain(svc, lambda: stored(db_dsn) == 16)
    produce_events(boot, topics.main, [e])
    drain(svc, lambda: scalar(db_dsn, "SELECT sum(duplicates) FROM ingest_counters") == 2)
    assert scalar(db_dsn, "SELECT count(*) FROM processed_events WHERE event_id = %s", (e.event_id,)) == 1
    assert scalar(db_dsn, "SELECT count(*) FROM metrics WHERE event_id = %s", (e.event_id,)) == 1
    assert scalar(db_dsn, "SELECT sum(duplicates) FROM ingest_counters") == 2
    assert scalar(db_dsn, "SELECT sum(conflicts) FROM ingest_counters") == 0
    assert stored(db_dsn) == 16
    svc.close()  # settles the batch in flight: its counters reach the metrics after its commit
    assert svc.metrics.duplicates._value.get() == 2


def test_a_member_stuck_out_of_the_group_is_replaced_and_reads_on(
    topics: Topics, db_dsn: str, make_consumer: Factory, group: str
) -> None:
    boot = topics.settings.bootstrap()
    first = make_events(20, 50, ts_ms=int(time.time() * 1000) - 60_000)
    produce_events(boot, topics.main, first)
    svc = make_consumer()
    drain(svc, lambda: stored(db_dsn) == len(first) and len(svc.assigned) == 12)
    old = svc.consumer
    # what librdkafka's statistics showed in the fault suite: a member waiting, past any
    # rebalance's limit, for an unassign that never completes
    svc.group_watch.observe(
        time.monotonic() - svc.group_watch.limit_s - 1, "query-coord", "wait-incr-unassign-to-complete"
    )
    svc.step()
    assert svc.consumer is not old and svc.metrics.rejoins._value.get() == 1
    second = make_events(20, 50)
    produce_events(boot, topics.main, second)
    drain(svc, lambda: stored(db_dsn) == len(first) + len(second) and len(svc.assigned) == 12)
    assert svc.group_watch.stuck(time.monotonic()) is None
    assert scalar(db_dsn, "SELECT count(DISTINCT event_id) FROM metrics") == len(first) + len(second)
    svc.close()
    assert sum(committed(topics, group).values()) == len(first) + len(second)


def test_reused_event_id_with_other_content_is_a_visible_conflict(
    topics: Topics, db_dsn: str, make_consumer: Factory
) -> None:
    e = make_events(1, 1)[0]
    changed = Ev(e.sensor_id, e.event_id, e.ts_ms, e.value + 1.5, e.seq)
    produce_events(topics.settings.bootstrap(), topics.main, [e, changed])
    svc = make_consumer()
    drain(svc, lambda: scalar(db_dsn, "SELECT count(*) FROM event_conflicts") == 1)
    assert scalar(db_dsn, "SELECT value FROM metrics WHERE event_id = %s", (e.event_id,)) == e.value
    assert scalar(db_dsn, "SELECT sum(conflicts) FROM ingest_counters") == 1


def _poison_cases(now_ms: int) -> list[tuple[ev.Reason, bytes | None, bytes]]:
    def obj(**kw: object) -> bytes:
        base: dict[str, object] = {
            "sensor_id": "sensor-p",
            "event_id": str(uuid.uuid4()),
            "timestamp": now_ms,
            "value": 1.0,
            "seq": 1,
        }
        base.update(kw)
        return orjson.dumps({k: v for k, v in base.items() if v is not ...})

    k = b"sensor-p"
    iso_now = datetime.now(UTC).isoformat()
    return [
        (ev.Reason.MALFORMED_JSON, k, b'{"sensor_id": "sensor-p", '),
        (ev.Reason.NOT_UTF8, k, b'{"sensor_id": "\xff\xfe"}'),
        (ev.Reason.NOT_AN_OBJECT, k, b"[1, 2, 3]"),
        (ev.Reason.MISSING_FIELD, k, obj(seq=...)),
        (ev.Reason.UNKNOWN_FIELD, k, obj(extra=1)),
        (ev.Reason.WRONG_TYPE, k, obj(value="12.5")),
        (ev.Reason.WRONG_TYPE, k, obj(value=True)),
        (ev.Reason.NON_FINITE_VALUE, k, obj(value=1.0).replace(b'"value":1.0', b'"value":NaN')),
        (ev.Reason.NON_FINITE_VALUE, k, obj(value=1.0).replace(b'"value":1.0', b'"value":Infinity')),
        (ev.Reason.VALUE_OUT_OF_RANGE, k, obj(value=1e300)),
        (ev.Reason.VALUE_OUT_OF_RANGE, k, obj(value=1.0).replace(b'"value":1.0', b'"value":1e400')),
        (ev.Reason.NEGATIVE_SEQ, k, obj(seq=-1)),
        (ev.Reason.KEY_MISMATCH, b"sensor-other", obj()),
        (ev.Reason.KEY_MISMATCH, None, obj()),
        (ev.Reason.TIMESTAMP_NO_ZONE, k, obj(timestamp=iso_now.replace("+00:00", ""))),
        (ev.Reason.TIMESTAMP_INVALID, k, obj(timestamp="yesterday")),
        (ev.Reason.TIMESTAMP_OUT_OF_WINDOW, k, obj(timestamp=now_ms + 3 * 86_400_000)),
        (ev.Reason.TIMESTAMP_OUT_OF_WINDOW, k, obj(timestamp=now_ms - 30 * 86_400_000)),
        (ev.Reason.BAD_ID, k, obj(event_id='has"quote')),
        (ev.Reason.TOO_LARGE, k, obj(event_id="x" * 10).replace(b"}", b"," + b" " * 70_000 + b"}")),
        (ev.Reason.EMPTY, k, b""),
    ]


def test_every_poison_kind_is_dead_lettered_and_neighbours_are_stored(
    topics: Topics, db_dsn: str, make_consumer: Factory
) -> None:
    boot = topics.settings.bootstrap()
    now_ms = int(time.time() * 1000)
    cases = _poison_cases(now_ms)
    valid = make_events(1, len(cases) + 1)
    valid = [Ev("sensor-p", e.event_id, e.ts_ms, e.value, e.seq) for e in valid]
    msgs: list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
    for i, (reason, key, value) in enumerate(cases):
        msgs.append((b"sensor-p", valid[i].encode(), None))
        msgs.append((key, value, [(ev.H_POISON, reason.value.encode())]))
    msgs.append((b"sensor-p", valid[-1].encode(), None))
    produce(boot, topics.main, msgs)
    svc = make_consumer()
    drain(
        svc, lambda: stored(db_dsn) == len(valid) and scalar(db_dsn, "SELECT count(*) FROM dead_letters") == len(cases)
    )
    with psycopg.connect(db_dsn) as conn:
        rows = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute("SELECT kafka_partition, kafka_offset, reason, poison_label FROM dead_letters")
        }
    # every dead letter carries the reason its injector expected
    assert sorted(rows.values()) == sorted((c[0].value, c[0].value) for c in cases)
    dlq = consume_all(boot, topics.dlq, len(cases))
    assert len(dlq) == len(cases)
    by_source = {
        (int(dict(m.headers())[ev.H_SOURCE_PARTITION]), int(dict(m.headers())[ev.H_SOURCE_OFFSET])): m for m in dlq
    }
    assert set(by_source) == set(rows)
    for pos, (reason, _label) in rows.items():
        h = dict(by_source[pos].headers())
        assert h[ev.H_REASON].decode() == reason
        assert h[ev.H_SOURCE_TOPIC].decode() == topics.main
        assert h[ev.H_DETAIL]
    originals = {v for _r, _k, v in cases}
    assert {m.value() or b"" for m in dlq} == originals  # original bytes kept
    # the partition kept moving: everything gets committed. The last batch's offsets are stored
    # when the next step settles it, and reach the broker with the next auto-commit, so the
    # consumer keeps stepping until they are there (drain fails the test if they never are).
    drain(svc, lambda: sum(committed(topics, svc.settings.group_id).values()) == len(msgs), timeout=30)


def test_events_for_days_without_partitions_are_stored(topics: Topics, db_dsn: str, make_consumer: Factory) -> None:
    now = datetime.now(UTC)
    y, t = now - timedelta(days=1), now + timedelta(hours=20)
    events = [
        Ev("sensor-d", str(uuid.uuid4()), int(y.timestamp() * 1000), 1.0, 0),
        Ev("sensor-d", str(uuid.uuid4()), int(t.timestamp() * 1000), 2.0, 1),
    ]
    svc = make_consumer()
    svc._next_maintain = float("inf")  # no ahead-of-time creation: the batch path must cope alone
    assert scalar(db_dsn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'metrics'::regclass") == 0
    produce_events(topics.settings.bootstrap(), topics.main, events)
    drain(svc, lambda: stored(db_dsn) == 2)
    with psycopg.connect(db_dsn) as conn:
        parts = dict(conn.execute("SELECT value, tableoid::regclass::text FROM metrics").fetchall())
    assert parts[1.0] == f"metrics_{y:%Y%m%d}"
    assert parts[2.0] == f"metrics_{t:%Y%m%d}"


def _consumer_proc(topics: Topics, db_dsn: str, group: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": topics.settings.bootstrap(),
        "SENSORPIPE_KAFKA_TOPIC": topics.main,
        "SENSORPIPE_KAFKA_DLQ_TOPIC": topics.dlq,
        "SENSORPIPE_DATABASE_URL": db_dsn,
        "SENSORPIPE_CONSUMER_GROUP_ID": group,
        "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sensorpipe", "consumer", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _assert_exactly_once(db_dsn: str, events: list[Ev]) -> None:
    assert stored(db_dsn) == len(events)
    assert scalar(db_dsn, "SELECT count(DISTINCT event_id) FROM metrics") == len(events)
    assert scalar(db_dsn, "SELECT count(*) FROM processed_events") == len(events)
    assert scalar(db_dsn, "SELECT coalesce(sum(order_violations), 0) FROM sensor_stats") == 0


def test_sigkill_mid_run_loses_nothing_and_stores_nothing_twice(topics: Topics, db_dsn: str, group: str) -> None:
    events = make_events(200, 150)  # 30,000
    produce_events(topics.settings.bootstrap(), topics.main, events)
    p = _consumer_proc(topics, db_dsn, group, "--batch-max", "500")
    try:
        wait_until(lambda: stored(db_dsn) > 3000, 60, "the first batches")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        before = stored(db_dsn)
        assert before < len(events)
    finally:
        if p.poll() is None:
            p.kill()
    p = _consumer_proc(topics, db_dsn, group, "--batch-max", "500")
    try:
        wait_until(lambda: stored(db_dsn) == len(events), 120, "all events stored after the restart")
        wait_until(lambda: sum(committed(topics, group).values()) == len(events), 30, "offsets committed")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    _assert_exactly_once(db_dsn, events)


def test_postgres_stopped_mid_batch_moves_no_offset(
    topics: Topics, db_dsn: str, group: str, platform: Platform
) -> None:
    assert platform.pg is not None
    events = make_events(100, 100)  # 10,000
    produce_events(topics.settings.bootstrap(), topics.main, events)
    # A slow batch makes it likely the stop lands inside a transaction.
    p = _consumer_proc(topics, db_dsn, group, "--batch-max", "500", "--slowdown-ms", "150")
    try:
        wait_until(lambda: stored(db_dsn) > 1000, 60, "the first batches")
        out = platform.pg.pg_ctl("stop", "-m", "immediate")
        assert out.returncode == 0, out.stderr
        # offsets stored for batches committed before the stop reach the broker within one
        # auto-commit interval (and its round trip); after that nothing may move
        time.sleep(max(2 * AUTO_COMMIT_INTERVAL_MS / 1000, 2.0))
        frozen = committed(topics, group)
        time.sleep(4)
        assert committed(topics, group) == frozen  # no offset moves while the database is down
        assert p.poll() is None  # the consumer waits and retries; it does not crash
        platform.restart_postgres()
        wait_until(lambda: stored(db_dsn) == len(events), 120, "all events stored after recovery")
        wait_until(lambda: sum(committed(topics, group).values()) == len(events), 30, "offsets committed")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    _assert_exactly_once(db_dsn, events)
    # at least one batch hit the outage and was retried
    assert scalar(db_dsn, "SELECT sum(redeliveries) + sum(stored) FROM ingest_counters") >= len(events)


@pytest.mark.parametrize("n", [2, 3])
def test_consumers_share_the_partitions_without_duplicates(topics: Topics, db_dsn: str, group: str, n: int) -> None:
    events = make_events(300, 60)  # 18,000
    procs = [_consumer_proc(topics, db_dsn, group, "--batch-max", "1000") for _ in range(n)]
    try:
        admin = admin_client(topics.settings.bootstrap())

        def members() -> int:
            desc = admin.describe_consumer_groups([group])[group].result()
            return len(desc.members) if str(desc.state).endswith("STABLE") else 0

        wait_until(lambda: members() == n, 60, f"{n} consumers in the group")
        produce_events(topics.settings.bootstrap(), topics.main, events)
        wait_until(lambda: stored(db_dsn) == len(events), 120, "all events stored")
        wait_until(lambda: sum(committed(topics, group).values()) == len(events), 30, "offsets committed")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
    assert codes == [0] * n
    _assert_exactly_once(db_dsn, events)
    assert scalar(db_dsn, "SELECT count(DISTINCT kafka_partition) FROM metrics") == 12
    with psycopg.connect(db_dsn) as conn:
        raw = conn.execute(
            "SELECT sensor_id, date_trunc('minute', ts) m, count(*), sum(value), min(value), max(value)"
            " FROM metrics GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        rolled = conn.execute("SELECT sensor_id, minute, count, sum, min, max FROM metrics_1m ORDER BY 1, 2").fetchall()
    assert [(*r[:3], pytest.approx(r[3]), *r[4:]) for r in raw] == rolled


def _counters(dsn: str) -> tuple[int, int, int]:
    row = scalar(dsn, "SELECT array[sum(stored), sum(redeliveries), sum(duplicates)]::int8[] FROM ingest_counters")
    return int(row[0]), int(row[1]), int(row[2])


def test_a_new_group_reading_recorded_positions_counts_them_without_decoding(
    topics: Topics, db_dsn: str, make_consumer: Factory
) -> None:
    """Group A stores a topic holding a poison message. Group B, reset to the earliest offset,
    reads it all again: the recorded positions are redeliveries, not decoded, and the poison
    is not dead-lettered a second time; what was produced since is stored. Group C, with the
    position path off, classifies every copy by event id instead, with the same rows."""
    boot = topics.settings.bootstrap()
    first = make_events(4, 10)
    msgs: list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]] = [
        (e.sensor_id.encode(), e.encode(), None) for e in first
    ]
    msgs.insert(7, (b"sensor-00001", b"{not json", None))
    produce(boot, topics.main, msgs)
    a = make_consumer()
    drain(a, lambda: stored(db_dsn) == 40 and scalar(db_dsn, "SELECT count(*) FROM dead_letters") == 1)
    a.close()
    with psycopg.connect(db_dsn) as conn:
        ranges = conn.execute(
            "SELECT kafka_partition, first_offset, last_offset FROM processed_ranges ORDER BY 1"
        ).fetchall()
    parts = {tp: n for tp, n in end_offsets(topics).items() if n}
    assert [(p, 0, n - 1) for p, n in sorted(parts.items())] == ranges  # every position read, once

    later = [Ev(f"late-{e.sensor_id}", e.event_id, e.ts_ms, e.value, e.seq) for e in make_events(2, 5)]
    produce_events(boot, topics.main, later)
    b = make_consumer(group_id=f"g-{uuid.uuid4().hex[:10]}")
    drain(b, lambda: stored(db_dsn) == 50)
    b.close()
    assert b.metrics.known_positions._value.get() == 41  # 40 events and the poison message
    assert b.metrics.redeliveries._value.get() == 41
    assert b.metrics.stored._value.get() == 10
    assert sum(v._value.get() for v in b.metrics.dlq._metrics.values()) == 0  # not dead-lettered again
    assert _counters(db_dsn) == (50, 41, 0)
    assert scalar(db_dsn, "SELECT count(*) FROM dead_letters") == 1

    c = make_consumer(group_id=f"g-{uuid.uuid4().hex[:10]}", replay_by_position=False)
    drain(c, lambda: _counters(db_dsn)[1] == 41 + 50)
    c.close()
    assert c.metrics.known_positions._value.get() == 0
    assert c.metrics.redeliveries._value.get() == 50  # found by event id and position in processed_events
    assert sum(v._value.get() for v in c.metrics.dlq._metrics.values()) == 1  # decoded, so dead-lettered again
    _assert_exactly_once(db_dsn, first + later)


def test_positions_recorded_for_another_topic_id_are_not_taken_as_processed(
    topics: Topics, db_dsn: str, make_consumer: Factory
) -> None:
    """A topic deleted and created again under its name restarts at offset 0 with a new Kafka
    id: ranges recorded under the old id cover its offsets but must not match."""
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "INSERT INTO processed_ranges SELECT 'an-older-topic-id', p, 0, 1000000 FROM generate_series(0, 11) AS p"
        )
    events = make_events(3, 6)
    produce_events(topics.settings.bootstrap(), topics.main, events)
    svc = make_consumer()
    drain(svc, lambda: stored(db_dsn) == len(events))
    svc.close()
    assert svc.metrics.known_positions._value.get() == 0
    _assert_exactly_once(db_dsn, events)
