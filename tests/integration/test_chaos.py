"""The fault suite: each fault runs under load and ends with the audit, which must show
0 lost, 0 duplicate rows, 0 order violations and every acknowledged poison message
dead-lettered.

Two sizes of the same scenarios:
- `make test` runs the fast subset (this file as is): at least one run of each kind;
- `make chaos` sets SENSORPIPE_CHAOS=full: 20+ consumer kills, a 60 s broker freeze,
  repeated database and rebalance faults, longer loads.

Each run writes its figures to `.state/chaos/<scenario>.json` (what docs/RELIABILITY.md
quotes) and prints a one-line summary. SENSORPIPE_CHAOS_SEED replays a run's random choices.

Everything is real: the session's Kafka broker and PostgreSQL server (and, for the
one-of-three scenario, a 3-node KRaft cluster started here), with `sensorpipe producer`
and `sensorpipe consumer` as separate processes that are killed, frozen and restarted.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, Producer

from sensorpipe.contracts.disk import MiB
from sensorpipe.proof.tmpfs import fill, small_tmpfs
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.kafka import cluster_answers
from sensorpipe.runtime.postgres import LocalPostgres
from sensorpipe.runtime.supervisor import Platform, down
from sensorpipe.settings import DatabaseSettings, KafkaSettings
from sensorpipe.storage.migrate import migrate
from sensorpipe.storage.writer import APPLICATION_NAME

from .chaos_rig import FULL, RATE, REAP_S, Rig, assert_clean, rig, rng, wait_exit
from .conftest import REPO, Topics
from .helpers import consume_all, scalar, wait_until

__all__ = ["rig", "rng"]  # fixtures

# -- 1. consumer killed -------------------------------------------------------------------------
POINTS = ["before_db_commit", "after_db_commit", "poll", "anywhere"]


def test_consumer_killed_at_every_point(rig: Rig, rng: random.Random) -> None:
    kills = 24 if FULL else 4
    rig.producer()
    by_point: dict[str, int] = dict.fromkeys(POINTS, 0)
    for i in range(kills):
        point = POINTS[i % len(POINTS)]
        if point == "anywhere":  # an unaimed SIGKILL from outside, at a random moment
            p = rig.consumer()
            time.sleep(rng.uniform(2.0, 6.0))
            p.send_signal(signal.SIGKILL)
            code = wait_exit(p, 10, "the consumer's death")
        else:
            env = {
                "SENSORPIPE_CONSUMER_FAILPOINT": point,
                "SENSORPIPE_CONSUMER_FAILPOINT_AFTER_BATCHES": str(rng.randint(1, 4)),
            }
            p = rig.consumer(env=env)
            code = wait_exit(p, 90, f"the failpoint {point}")
        assert code == -signal.SIGKILL, f"the consumer exited with {code}, not by SIGKILL at {point}"
        by_point[point] += 1
    rig.figures["kills"] = by_point
    stored_before_recovery = rig.stored()
    report = rig.finish()
    assert_clean(report)
    assert stored_before_recovery > 0, "no batch was ever committed between the kills"
    # the kills after the database commit left batches whose offsets were never committed
    assert report.counters["redeliveries"] > 0


# -- 2. PostgreSQL down -------------------------------------------------------------------------
def _terminate_consumer_backends(dsn: str) -> int:
    sql = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = %s AND datname = current_database()"
    )
    return int(scalar(dsn, sql, (APPLICATION_NAME,)))


def test_postgres_stopped_and_backend_terminated(rig: Rig, platform: Platform, rng: random.Random) -> None:
    assert platform.pg is not None
    rig.producer()
    # 100 ms of database time per batch widens the window in which a fault lands mid-transaction
    rig.consumer("--slowdown-ms", "100")
    wait_until(lambda: rig.stored() > 2000, 60, "the first batches")
    terminated = 0
    for _ in range(10 if FULL else 3):
        time.sleep(rng.uniform(0.5, 2.5))
        terminated += _terminate_consumer_backends(rig.dsn)
    assert terminated > 0, "no consumer backend was found to terminate"
    outages: list[float] = []
    for _ in range(3 if FULL else 1):
        time.sleep(rng.uniform(1.0, 4.0))
        out = platform.pg.pg_ctl("stop", "-m", "immediate")
        assert out.returncode == 0, out.stderr
        down_for = rng.uniform(3.0, 10.0)
        time.sleep(down_for)
        platform.restart_postgres()
        outages.append(round(down_for, 1))
        assert rig.running_consumers(), "the consumer died during the database outage"
    rig.figures.update(backends_terminated=terminated, postgres_outages_s=outages)
    report = rig.finish()
    assert_clean(report)


# -- 3. broker faults ---------------------------------------------------------------------------
def test_broker_killed_restarted_and_frozen(rig: Rig, platform: Platform) -> None:
    rig.producer()
    rig.consumer()
    wait_until(lambda: rig.stored() > 2000, 60, "the first batches")
    restarts: list[float] = []
    for _ in range(2 if FULL else 1):
        time.sleep(3)
        broker = platform.kafka_procs[0]
        broker.send_signal(signal.SIGKILL)
        broker.wait(REAP_S)
        time.sleep(2)
        t0 = time.monotonic()
        platform.restart_kafka_node(1)
        wait_until(lambda: cluster_answers(rig.bootstrap, timeout=2), 120, "the broker to come back")
        restarts.append(round(time.monotonic() - t0, 1))
    before = rig.stored()
    wait_until(lambda: rig.stored() > before + 2000, 120, "storing to resume after the restart")
    freeze = 60 if FULL else 12
    broker = platform.kafka_procs[0]
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        time.sleep(freeze)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    assert all(p.poll() is None for p in [*rig.producers, *rig.consumers]), "a client died while the broker was frozen"
    time.sleep(5)
    rig.figures.update(broker_restarts_s=restarts, broker_frozen_s=freeze)
    report = rig.finish()
    assert_clean(report)
    assert report.failed == 0


# -- 4. one node of three lost ------------------------------------------------------------------
# The scenario is about losing one broker of a working cluster: its load starts once the fresh
# cluster serves (the brokers' logs, kept with the test, tell what it waited for).
WARM_UP_S = 180


@pytest.fixture
def three_brokers(state_dir: Path, platform: Platform, tmp_path: Path) -> Iterator[tuple[Platform, float]]:
    """A 3-node KRaft cluster (RF 3, min.insync.replicas 2) beside the session's broker, for
    one test: its state goes with the test, its brokers' logs are kept in the test's folder."""
    assert platform.pg is not None
    state = state_dir.parent / f"{state_dir.name}-3brokers"
    down(state, purge=True, log=lambda _m: None)
    port = int(os.environ.get("SENSORPIPE_TEST_KAFKA3_PORT", "29092"))
    kafka = KafkaSettings(
        bootstrap_servers=None, port=port, brokers=3, libs_dir=REPO / ".cache" / "kafka" / "libs", heap="384m"
    )
    dsn = platform.pg.create_database(f"k3_{uuid.uuid4().hex[:8]}")
    cluster = Platform(kafka, DatabaseSettings(url=dsn), state, log=lambda _m: None)
    try:
        cluster.start()
        ensure_topics(kafka, topic="warm_up", dlq_topic="warm_up.dlq")
        warm = _serving(kafka.bootstrap(), "warm_up", kafka.partitions, WARM_UP_S)
        yield cluster, warm
        cluster.stop()
    finally:
        if (state / "logs").is_dir():  # not when start-up failed before any broker ran
            shutil.copytree(state / "logs", tmp_path / "brokers", dirs_exist_ok=True)
        down(state, purge=True, log=lambda _m: None)


def _serving(bootstrap: str, topic: str, partitions: int, timeout: float) -> float:
    """Seconds until a fresh cluster serves what the scenario needs from it: an idempotent
    acks=all write to every partition of `topic`, and a consumer group that reads them back and
    commits. The scenario is about losing a broker of a working cluster, so it starts after this."""
    t0, deadline = time.monotonic(), time.monotonic() + timeout
    acked: list[KafkaError | None] = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(partitions):
        p.produce(topic, b"warm-up", partition=i, on_delivery=lambda e, _m: acked.append(e))
    assert p.flush(timeout) == 0 and acked == [None] * partitions, f"the warm-up writes were not acked: {acked}"
    read = consume_all(bootstrap, topic, partitions, max(1.0, deadline - time.monotonic()), commit=True)
    assert len(read) == partitions, f"the warm-up group read {len(read)} of {partitions} writes in {timeout:.0f}s"
    return round(time.monotonic() - t0, 1)


@pytest.mark.timeout(WARM_UP_S + (600 if FULL else 300))
def test_one_broker_of_three_lost_under_load(
    three_brokers: tuple[Platform, float], db_dsn: str, tmp_path: Path
) -> None:
    cluster, warm = three_brokers
    suffix = uuid.uuid4().hex[:8]
    settings = cluster.kafka_settings
    main, dlq = f"sensor_metrics_{suffix}", f"sensor_metrics_{suffix}.dlq"
    ensure_topics(settings, topic=main, dlq_topic=dlq)
    topics = Topics(main, dlq, settings.model_copy(update={"topic": main, "dlq_topic": dlq}))
    rig = Rig("one_broker_of_three_lost", topics, db_dsn, tmp_path)
    try:
        rig.producer()
        rig.consumer()
        wait_until(lambda: rig.stored() > 2000, 90, "the first batches")
        victim = 2  # not node 1, whose port is the bootstrap address
        cluster.kafka_procs[victim - 1].send_signal(signal.SIGKILL)
        cluster.kafka_procs[victim - 1].wait(REAP_S)
        at_kill, t0 = rig.stored(), time.monotonic()
        # The controller notices the dead node after broker.session.timeout.ms (9 s) and moves
        # its partition leaderships (and maybe the group coordinator) to the two others.
        wait_until(lambda: rig.stored() > at_kill + 2000, 120, "storing to go on with two brokers of three")
        recovered = round(time.monotonic() - t0, 1)
        time.sleep(20 if FULL else 5)  # the load goes on with two of three
        rig.figures.update(
            brokers=3,
            cluster_serving_after_s=warm,
            replication_factor=3,
            min_insync_replicas=2,
            killed_node=victim,
            storing_again_after_s=recovered,
        )
        report = rig.finish()
    finally:
        rig.kill_all()
    assert_clean(report)
    assert report.failed == 0


# -- 5. rebalance storm -------------------------------------------------------------------------
def _stuck_in_transaction(dsn: str) -> int:
    """Consumer backends idle inside a transaction for over a second: only a frozen client
    leaves one there (a live consumer's statements follow each other within milliseconds)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
        " AND state = 'idle in transaction' AND now() - state_change > interval '1 second'"
    )
    return int(scalar(dsn, sql, (APPLICATION_NAME,)))


def test_rebalance_storm_and_a_consumer_frozen_past_max_poll_interval(rig: Rig, rng: random.Random) -> None:
    rig.producer()
    steady = rig.consumer()
    # the one to freeze spends most of each batch inside its transaction
    frozen = rig.consumer("--slowdown-ms", "400")
    wait_until(lambda: rig.stored() > 2000, 60, "the first batches")
    cycles = 8 if FULL else 2
    for _ in range(cycles):  # members join and leave
        joiner = rig.consumer()
        time.sleep(rng.uniform(3.0, 7.0))
        joiner.send_signal(signal.SIGTERM)
        assert wait_exit(joiner, 60, "a clean leave") == 0
    # Freeze one consumer past max.poll.interval.ms (10 s here) and its session (6 s), ideally
    # inside its transaction: the group moves its partitions, the server ends its transaction
    # after db_idle_tx_timeout_ms, and whatever it does on waking must not duplicate anything.
    freeze = 40 if FULL else 20
    os.kill(frozen.pid, signal.SIGSTOP)
    before = rig.stored()
    try:
        time.sleep(2)
        in_tx = _stuck_in_transaction(rig.dsn) > 0
        time.sleep(freeze - 2)
        moved = rig.stored() > before
        ended_by_server = in_tx and _stuck_in_transaction(rig.dsn) == 0
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert moved, "the partitions of the frozen consumer were not taken over"
    time.sleep(8)
    assert steady.poll() is None and frozen.poll() is None, "a consumer died in the storm"
    rig.figures.update(
        join_leave_cycles=cycles,
        frozen_s=freeze,
        frozen_inside_transaction=in_tx,
        frozen_transaction_ended_by_server=ended_by_server,
    )
    report = rig.finish()
    assert_clean(report)


# -- 6. producer killed -------------------------------------------------------------------------
def test_producer_killed_and_restarted(rig: Rig, rng: random.Random) -> None:
    rig.consumer()
    kills = 5 if FULL else 2
    for _ in range(kills):
        p = rig.producer()
        time.sleep(rng.uniform(3.0, 6.0))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    rig.producer()  # the last one stops cleanly in finish()
    time.sleep(3)
    rig.figures["producer_kills"] = kills
    report = rig.finish()
    # A SIGKILLed producer loses the ledger lines it had not yet written (about one second of
    # delivery reports): those events were acked and stored, so they show as phantom, never
    # as lost. Nothing else may.
    assert_clean(report, phantom_ok=kills * 2 * RATE)
    for ledger in rig.ledgers[:kills]:
        assert "acked" in ledger.read_text(), f"the killed producer's ledger {ledger.name} recorded nothing"


# -- 7. the disk fills --------------------------------------------------------------------------
DISK_FS = 384 * MiB  # a filesystem of this size holds the fault's PostgreSQL cluster
DISK_FLOOR = 128 * MiB
# The ballast leaves this much free: under the floor, and above the cluster's WAL budget
# (max_wal_size), which PostgreSQL's own work (autovacuum of what was just stored, checkpoints)
# may still fill while our writes are held. Less than that, and the filler, not sensorpipe,
# is what runs PostgreSQL out of space.
DISK_LEFT = 80 * MiB
DISK_WAL = 64 * MiB


@pytest.mark.timeout(900 if FULL else 300)
def test_disk_fills_under_load(topics: Topics, tmp_path: Path) -> None:
    """PostgreSQL's data lives on a small filesystem that something else fills under load: the
    consumer pauses at the floor (PostgreSQL stays up and never meets a full disk), the
    backlog waits in Kafka, and once space returns it drains with nothing lost or doubled."""
    with small_tmpfs(DISK_FS, "diskfull") as fs:
        pg = LocalPostgres(
            DatabaseSettings(url=None, port=int(os.environ.get("SENSORPIPE_TEST_PG2_PORT", "56532"))), fs
        )
        pg.max_wal_bytes = DISK_WAL
        server = pg.start()
        try:
            _disk_fills(pg, fs, topics, tmp_path)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
            log = fs / "logs" / "postgres.log"
            if log.is_file():  # the filesystem goes with the test: keep its server log for a failure
                shutil.copyfile(log, tmp_path / "postgres.log")


def _disk_fills(pg: LocalPostgres, fs: Path, topics: Topics, work: Path) -> None:
    dsn = pg.dsn_for(pg.settings.name)
    migrate(dsn)
    rig = Rig("disk_fills", topics, dsn, work)
    env = {
        "SENSORPIPE_DISK_WATCH": orjson.dumps([str(fs)]).decode(),
        "SENSORPIPE_DISK_FLOOR": str(DISK_FLOOR),
        "SENSORPIPE_DISK_CHECK_S": "0.5",
    }
    try:
        rig.producer()
        rig.consumer(env=env)
        holds: list[dict[str, Any]] = []
        for _ in range(2 if FULL else 1):
            wait_until(lambda: rig.stored() > (holds[-1]["stored_after"] if holds else 0) + 2000, 60, "storing")
            # Each hold starts under the steady load, once the last hold's backlog has drained: a
            # drain writes many times the load's bytes between two probes of the guard, more than
            # this small filesystem leaves under its floor (decision 001).
            wait_until(lambda: rig.lag() <= RATE, 180, "the backlog to drain")
            holds.append(_hold_at_the_floor(rig, fs, 60 if FULL else 20))
        rig.figures.update(filesystem_bytes=DISK_FS, floor_bytes=DISK_FLOOR, holds=holds)
        report = rig.finish()
    finally:
        rig.kill_all()
    assert_clean(report)
    log = (fs / "logs" / "postgres.log").read_text(errors="replace")
    assert "No space left on device" not in log and "could not write" not in log


def _hold_at_the_floor(rig: Rig, fs: Path, seconds: float) -> dict[str, Any]:
    ballast = fill(fs, leave=DISK_LEFT)
    time.sleep(3)  # the guard probes every 0.5 s; the batch in flight finishes
    paused_at, lag_at = rig.stored(), rig.lag()
    time.sleep(seconds)
    held, lag = rig.stored(), rig.lag()
    least_free = shutil.disk_usage(fs).free
    assert held == paused_at, f"{held - paused_at} events were written under the floor"
    assert lag > lag_at, "the backlog did not grow in Kafka while the consumer was paused"
    assert scalar(rig.dsn, "SELECT 1") == 1, "PostgreSQL went down"
    assert all(p.poll() is None for p in rig.consumers), "the consumer died at the floor"
    assert least_free > 0
    (fs / "ballast").unlink()
    t0 = time.monotonic()
    wait_until(lambda: rig.stored() > held, 30, "consumption to resume once space returned")
    return {
        "ballast_bytes": ballast,
        "held_s": seconds,
        "stored_while_held": held - paused_at,
        "backlog_grew_by": lag - lag_at,
        "free_bytes_at_end_of_hold": least_free,
        "resumed_after_s": round(time.monotonic() - t0, 1),
        "stored_after": rig.stored(),
    }
