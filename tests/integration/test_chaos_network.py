"""Network faults: the consumer runs in a network namespace of its own (made and removed by
this module, named for it), joined to this machine by a veth pair; a broker and a PostgreSQL
cluster started here listen on the machine's end of the pair, so the consumer reaches both
across it, and the faults are packet filters (nftables) inside the namespace, or a relay
that adds latency (this kernel has no netem). The producer, the audit and any second
consumer stay on the machine's side, untouched by the faults.

Each scenario ends with the audit of the process faults (chaos_rig): 0 lost, 0 duplicate
rows, 0 order violations, every acknowledged poison message dead-lettered. `make test` runs
the fast run, `make chaos` the full one (SENSORPIPE_CHAOS=full). Root only (CI runs as root).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sensorpipe.proof.netfault import DelayRelay, Netns
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.supervisor import Platform, down
from sensorpipe.settings import DatabaseSettings, KafkaSettings
from sensorpipe.storage.migrate import migrate

from .chaos_rig import FULL, Rig, assert_clean
from .conftest import REPO, Topics
from .helpers import scalar, wait_until

KAFKA_PORT = int(os.environ.get("SENSORPIPE_TEST_NET_KAFKA_PORT", "39092"))
PG_PORT = int(os.environ.get("SENSORPIPE_TEST_NET_PG_PORT", "56632"))
RELAY_PORT = PG_PORT + 1
SESSION_S = 6  # the chaos consumers' session timeout (chaos_rig.FAST_GROUP)
# How long a silent database connection of the consumer lasts before its write fails.
NET_TIMEOUT = {"SENSORPIPE_CONSUMER_DB_NET_TIMEOUT_MS": "5000"}


@dataclass
class NetStack:
    ns: Netns
    platform: Platform

    @property
    def kafka(self) -> KafkaSettings:
        return self.platform.kafka_settings

    def ns_dsn(self, host_dsn: str, port: int = PG_PORT) -> str:
        """`host_dsn`'s database, reached from the namespace (to `port`, the server's or the
        relay's), with the password inline: the password file names only 127.0.0.1."""
        assert self.platform.pg is not None
        name = urlsplit(host_dsn).path.lstrip("/")
        user = self.platform.pg.settings.user
        return f"postgresql://{user}:{self.platform.pg.password()}@{self.ns.host_ip}:{port}/{name}"


@pytest.fixture(scope="module")
def net(state_dir: Path) -> Iterator[NetStack]:
    ns = Netns(f"spchaos{os.getpid() % 10000}", index=1 + os.getpid() % 250).create()
    state = state_dir.parent / f"{state_dir.name}-net"
    down(state, purge=True, log=lambda _m: None)
    kafka = KafkaSettings(
        bootstrap_servers=None,
        host=ns.host_ip,
        port=KAFKA_PORT,
        brokers=1,
        libs_dir=REPO / ".cache" / "kafka" / "libs",
        heap="384m",
    )
    db = DatabaseSettings(url=None, port=PG_PORT, listen_also=ns.host_ip)
    platform = Platform(kafka, db, state, log=lambda _m: None)
    try:
        platform.start()
        yield NetStack(ns, platform)
    finally:
        platform.stop()
        down(state, purge=True, log=lambda _m: None)
        ns.remove()


@pytest.fixture
def nrig(request: pytest.FixtureRequest, net: NetStack, tmp_path: Path) -> Iterator[Rig]:
    """A rig on fresh topics and a fresh database of the namespace's stack."""
    assert net.platform.pg is not None
    suffix = uuid.uuid4().hex[:10]
    main, dlq = f"sensor_metrics_{suffix}", f"sensor_metrics_{suffix}.dlq"
    ensure_topics(net.kafka, topic=main, dlq_topic=dlq)
    topics = Topics(main, dlq, net.kafka.model_copy(update={"topic": main, "dlq_topic": dlq}))
    dsn = net.platform.pg.create_database(f"n_{suffix}")
    migrate(dsn)
    r = Rig(request.node.name.removeprefix("test_"), topics, dsn, tmp_path)
    yield r
    r.kill_all()
    net.ns.heal()


def ns_consumer(rig: Rig, net: NetStack, *args: str, pg_port: int = PG_PORT) -> Any:
    env = {"SENSORPIPE_DATABASE_URL": net.ns_dsn(rig.dsn, pg_port), **NET_TIMEOUT}
    return rig.consumer(*args, env=env, prefix=net.ns.exec_prefix())


def rate_over(rig: Rig, seconds: float) -> float:
    """Events stored per second over the next `seconds`."""
    before = rig.stored()
    time.sleep(seconds)
    return round((rig.stored() - before) / seconds, 1)


def ns_in_transaction(rig: Rig, net: NetStack) -> bool:
    """Whether a database session from the namespace is inside a transaction now."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s::inet"
        " AND datname = current_database() AND xact_start IS NOT NULL"
    )
    return int(scalar(rig.dsn, sql, (net.ns.ns_ip,))) > 0


def rejoined_after(rig: Rig, net: NetStack) -> float:
    """Seconds until the namespace's consumer holds partitions in the group again."""
    t0 = time.monotonic()

    def back() -> bool:
        return any(net.ns.ns_ip in host and parts for host, parts in rig.members())

    wait_until(back, 90, "the cut member to rejoin the group with partitions", step=0.5)
    return round(time.monotonic() - t0, 1)


def wait_in_transaction(rig: Rig, net: NetStack) -> None:
    wait_until(lambda: ns_in_transaction(rig, net), 30, "the namespace's consumer to hold a transaction", step=0.02)


# -- 1. latency -----------------------------------------------------------------------------------
def test_latency_to_postgres(nrig: Rig, net: NetStack) -> None:
    """200 ms (± 40) on every request from the consumer to PostgreSQL: slower, nothing else."""
    relay = DelayRelay((net.ns.host_ip, RELAY_PORT), ("127.0.0.1", PG_PORT), delay_s=0.0, jitter_s=0.0)
    with relay:
        nrig.producer()
        consumer = ns_consumer(nrig, net, pg_port=RELAY_PORT)
        wait_until(lambda: nrig.stored() > 2000, 60, "the first batches")
        clear = rate_over(nrig, 10)
        relay.delay_s, relay.jitter_s = 0.2, 0.04
        seconds = 60 if FULL else 20
        slowed = rate_over(nrig, seconds)
        assert consumer.poll() is None, "the consumer died under latency"
        assert slowed > 0, "nothing was stored under latency"
        nrig.figures.update(
            latency_ms=200, jitter_ms=40, latency_s=seconds, stored_per_s_clear=clear, stored_per_s_slowed=slowed
        )
        t0 = time.monotonic()
        report = nrig.finish()
        nrig.figures["drain_with_latency_s"] = round(time.monotonic() - t0, 1)
        assert relay.chunks > 0
    assert_clean(report)
    assert report.failed == 0


# -- 2. loss --------------------------------------------------------------------------------------
def test_loss_to_the_broker(nrig: Rig, net: NetStack) -> None:
    """5% of the packets between the consumer and the broker dropped, each way."""
    nrig.producer()
    consumer = ns_consumer(nrig, net)
    wait_until(lambda: nrig.stored() > 2000, 60, "the first batches")
    clear = rate_over(nrig, 10)
    net.ns.lose(KAFKA_PORT, 5)
    seconds = 90 if FULL else 20
    lossy = rate_over(nrig, seconds)
    dropped = net.ns.dropped()
    net.ns.heal()
    assert consumer.poll() is None, "the consumer died under packet loss"
    assert lossy > 0, "nothing was stored under packet loss"
    assert dropped > 0, "the filter dropped nothing"
    nrig.figures.update(
        loss_percent=5, loss_s=seconds, packets_dropped=dropped, stored_per_s_clear=clear, stored_per_s_lossy=lossy
    )
    report = nrig.finish()
    assert_clean(report)


# -- 3. partition from PostgreSQL -----------------------------------------------------------------
def test_partition_from_postgres_during_a_batch(nrig: Rig, net: NetStack) -> None:
    """PostgreSQL unreachable for 30 s from inside a transaction: the write fails (no half
    commit), offsets stay, the consumer retries with backoff and carries on once healed."""
    nrig.producer()
    # 300 ms inside each transaction: the cut lands inside one
    consumer = ns_consumer(nrig, net, "--slowdown-ms", "300")
    wait_until(lambda: nrig.stored() > 2000, 60, "the first batches")
    held = 30
    wait_in_transaction(nrig, net)
    net.ns.partition(PG_PORT)
    time.sleep(2)  # the statement in flight may still have been answered
    stored, committed = nrig.stored(), nrig.committed()
    time.sleep(held - 2)
    assert nrig.stored() == stored, "rows were stored while the consumer could not reach PostgreSQL"
    assert nrig.committed() == committed, "offsets moved while nothing could be stored"
    assert consumer.poll() is None, "the consumer died in the partition"
    net.ns.heal()
    t0 = time.monotonic()
    wait_until(lambda: nrig.stored() > stored, 60, "storing to resume after the partition healed")
    recovered = round(time.monotonic() - t0, 1)
    log = (nrig.work / "consumer.log").read_text(errors="replace")
    nrig.figures.update(partitioned_s=held, inside_a_transaction=True, storing_again_after_s=recovered)
    report = nrig.finish()
    assert_clean(report)
    assert "not written" in log, "the consumer logged no failed write"


# -- 4. partition from the broker -----------------------------------------------------------------
def test_partition_from_the_broker_past_the_session(nrig: Rig, net: NetStack) -> None:
    """The consumer cut from the broker for longer than its session: the group gives its
    partitions to the other member; healed, the old member is fenced and rejoins."""
    nrig.producer()
    cut = ns_consumer(nrig, net)
    other = nrig.consumer()
    wait_until(lambda: nrig.stored() > 4000, 60, "the first batches")
    held = 60 if FULL else 25
    net.ns.partition(KAFKA_PORT)
    time.sleep(SESSION_S + 6)  # the session ends, the group rebalances
    before = nrig.committed()
    time.sleep(held - SESSION_S - 6)
    after = nrig.committed()
    net.ns.heal()
    advanced = sorted(p for p in after if after[p] > before[p])
    assert advanced == list(range(12)), f"only partitions {advanced} moved on while one member was cut off"
    rejoined = rejoined_after(nrig, net)  # fenced, the old member joins again
    assert cut.poll() is None and other.poll() is None, "a consumer died"
    nrig.figures.update(
        partitioned_s=held, partitions_served_by_the_other_member=len(advanced), rejoined_after_s=rejoined
    )
    report = nrig.finish()
    assert_clean(report)


# -- 5. one-sided partition -----------------------------------------------------------------------
def test_one_sided_partition_from_the_coordinator_in_a_transaction(nrig: Rig, net: NetStack) -> None:
    """While the consumer holds a transaction, its packets to the broker (and so to the group
    coordinator) are dropped; the broker's still reach it, and PostgreSQL stays reachable.
    Its batch commits in the database, its offsets cannot: the other member redelivers them."""
    nrig.producer()
    cut = ns_consumer(nrig, net, "--slowdown-ms", "500")
    other = nrig.consumer()
    wait_until(lambda: nrig.stored() > 4000, 60, "the first batches")
    held = 45 if FULL else 20
    wait_in_transaction(nrig, net)
    net.ns.partition(KAFKA_PORT, one_sided=True)
    time.sleep(held)
    reached_db = ns_in_transaction(nrig, net) or _ns_sessions(nrig, net) > 0
    net.ns.heal()
    rejoined = rejoined_after(nrig, net)
    assert cut.poll() is None and other.poll() is None, "a consumer died"
    nrig.figures.update(
        partitioned_s=held, one_sided=True, database_still_reached=reached_db, rejoined_after_s=rejoined
    )
    report = nrig.finish()
    assert_clean(report)
    assert reached_db, "the cut consumer had no database session left"
    assert report.counters["redeliveries"] > 0, "nothing the cut member stored was delivered again"


def _ns_sessions(rig: Rig, net: NetStack) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s::inet AND datname = current_database()"
    return int(scalar(rig.dsn, sql, (net.ns.ns_ip,)))
