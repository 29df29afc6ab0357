"""The producer against the real broker: order, duplicates, poison, backpressure, restarts."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from sensorpipe.api.app import ApiConfig
from sensorpipe.contracts.events import H_POISON, EventDecoder, Poison, SensorEvent, Window
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.supervisor import Platform
from sensorpipe.settings import KafkaSettings

from .conftest import Topics, api_config
from .helpers import consume_all, wait_until


def _env(topics: Topics, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": topics.settings.bootstrap(),
        "SENSORPIPE_KAFKA_TOPIC": topics.main,
        "SENSORPIPE_STATE_DIR": str(state),
        "SENSORPIPE_PRODUCER_METRICS_PORT": "0",
    }


def run_producer(topics: Topics, state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorpipe", "producer", *args],
        env=_env(topics, state),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ledger_counts(path: Path) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for line in path.read_text().splitlines():
        kind, _ident, status, *_ts = line.split(",")  # events carry their timestamp too
        counts[(kind, status)] += 1
    return counts


def by_sensor(msgs: list) -> dict[str, list[tuple[int, int, int]]]:  # type: ignore[type-arg]
    """sensor -> [(partition, offset, seq)] in topic order within each partition."""
    out: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        if m.headers() and any(k == H_POISON for k, _ in m.headers()):
            continue
        ev = orjson.loads(m.value())
        out[ev["sensor_id"]].append((m.partition(), m.offset(), ev["seq"]))
    return out


def test_per_sensor_order_and_one_partition_per_sensor(topics: Topics, tmp_path: Path) -> None:
    out = run_producer(
        topics,
        tmp_path,
        "--rate",
        "20000",
        "--sensors",
        "500",
        "--duration",
        "3",
        "--ledger",
        str(tmp_path / "ledger.csv"),
    )
    assert out.returncode == 0, out.stderr
    acked = ledger_counts(tmp_path / "ledger.csv")[("e", "acked")]
    assert acked > 20_000
    msgs = consume_all(topics.settings.bootstrap(), topics.main, acked)
    assert len(msgs) == acked
    sensors = by_sensor(msgs)
    assert len(sensors) == 500
    decoder = EventDecoder(65536)
    window = Window(int(time.time() * 1e6), 86_400, 86_400)
    for m in msgs[:2000]:
        assert isinstance(decoder.decode(m.key(), m.value(), window), SensorEvent)  # valid by the contract
    for sid, rows in sensors.items():
        assert len({p for p, _, _ in rows}) == 1, f"{sid} spans partitions"
        seqs = [s for _, _, s in rows]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{sid} out of order or with gaps"


def test_workers_shard_the_sensors_and_keep_each_sensors_order(topics: Topics, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    out = run_producer(
        topics,
        tmp_path,
        "--workers",
        "2",
        "--rate",
        "6000",
        "--sensors",
        "301",
        "--duration",
        "3",
        "--ledger",
        str(ledger),
    )
    assert out.returncode == 0, out.stderr
    shards = [ledger.with_name(f"{ledger.name}.{i}") for i in range(2)]  # one ledger per worker
    ids = [{line.split(",")[1] for line in f.read_text().splitlines() if line.startswith("e,")} for f in shards]
    assert all(len(i) > 1000 for i in ids), "a worker produced (almost) nothing"
    msgs = consume_all(topics.settings.bootstrap(), topics.main, len(ids[0]) + len(ids[1]))
    sensor_of = {e["event_id"]: e["sensor_id"] for e in (orjson.loads(m.value()) for m in msgs)}
    owners = [{sensor_of[i] for i in shard_ids} for shard_ids in ids]
    assert not owners[0] & owners[1], "a sensor was produced by both workers"
    assert len(owners[0] | owners[1]) == 301
    assert abs(len(owners[0]) - len(owners[1])) <= 1  # index % workers: an even split
    for sid, rows in by_sensor(msgs).items():
        seqs = [s for _, _, s in rows]
        assert seqs == list(range(len(seqs))), f"{sid} out of order or with gaps across workers"


def test_duplicates_are_byte_identical_and_ratio_holds(topics: Topics, tmp_path: Path) -> None:
    out = run_producer(
        topics,
        tmp_path,
        "--rate",
        "20000",
        "--sensors",
        "200",
        "--duration",
        "2",
        "--duplicate-ratio",
        "0.1",
        "--ledger",
        str(tmp_path / "l.csv"),
    )
    assert out.returncode == 0, out.stderr
    counts = ledger_counts(tmp_path / "l.csv")
    events, dups = counts[("e", "acked")], counts[("d", "acked")]
    msgs = consume_all(topics.settings.bootstrap(), topics.main, events + dups)
    assert len(msgs) == events + dups
    seen: dict[str, bytes] = {}
    repeats = 0
    for m in msgs:
        eid = orjson.loads(m.value())["event_id"]
        if eid in seen:
            assert seen[eid] == m.value()  # byte-identical
            repeats += 1
        seen[eid] = m.value()
    assert repeats == dups
    assert 0.08 < dups / events < 0.12  # 10% within tolerance (n > 20,000)
    # a duplicate follows its original before that sensor's next event: order still holds
    for sid, rows in by_sensor(msgs).items():
        seqs = [s for _, _, s in rows]
        assert all(b >= a for a, b in itertools.pairwise(seqs)), sid


def test_poison_is_labelled_and_invalid(topics: Topics, tmp_path: Path) -> None:
    out = run_producer(
        topics,
        tmp_path,
        "--rate",
        "5000",
        "--sensors",
        "50",
        "--duration",
        "2",
        "--poison-ratio",
        "0.05",
        "--ledger",
        str(tmp_path / "l.csv"),
    )
    assert out.returncode == 0, out.stderr
    counts = ledger_counts(tmp_path / "l.csv")
    total = counts[("e", "acked")] + counts[("p", "acked")]
    msgs = consume_all(topics.settings.bootstrap(), topics.main, total)
    decoder = EventDecoder(65536)
    window = Window(int(time.time() * 1e6), 86_400, 86_400)
    labelled = 0
    for m in msgs:
        label = dict(m.headers() or []).get(H_POISON)
        result = decoder.decode(m.key(), m.value(), window)
        if label is None:
            assert isinstance(result, SensorEvent)
        else:
            labelled += 1
            assert isinstance(result, Poison) and result.reason.value == label.decode()
    assert labelled == counts[("p", "acked")] > 0


def test_restart_continues_seq(topics: Topics, tmp_path: Path) -> None:
    for _ in range(2):
        out = run_producer(topics, tmp_path, "--rate", "2000", "--sensors", "20", "--duration", "1.5")
        assert out.returncode == 0, out.stderr
    # a crash: SIGKILL mid-run, then a third run
    p = subprocess.Popen(
        [sys.executable, "-m", "sensorpipe", "producer", "--rate", "2000", "--sensors", "20"],
        env=_env(topics, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    out = run_producer(topics, tmp_path, "--rate", "2000", "--sensors", "20", "--duration", "1.5")
    assert out.returncode == 0, out.stderr
    msgs = consume_all(topics.settings.bootstrap(), topics.main, 10**9, timeout=10)  # everything there is
    for sid, rows in by_sensor(msgs).items():
        seqs = [s for _, _, s in rows]
        assert len(seqs) == len(set(seqs)), f"{sid} reused a seq"
        assert seqs == sorted(seqs), f"{sid} went backwards"
        assert seqs[0] == 0


def test_broker_paused_then_resumed_loses_nothing(topics: Topics, tmp_path: Path, platform: Platform) -> None:
    broker = platform.kafka_procs[0]
    ledger = tmp_path / "l.csv"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sensorpipe",
            "producer",
            "--rate",
            "20000",
            "--sensors",
            "1000",
            "--ledger",
            str(ledger),
        ],
        env=_env(topics, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rss: list[int] = []
    try:
        time.sleep(3)
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            for _ in range(20):
                time.sleep(1)
                rss.append(_rss_mb(p.pid))
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        time.sleep(8)
        assert p.poll() is None, "the producer died while the broker was paused"
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(120)
    assert max(rss) < 300, f"producer memory grew to {max(rss)} MB while the broker was paused"
    counts = ledger_counts(ledger)
    assert counts[("e", "failed")] == 0
    acked = counts[("e", "acked")]
    assert acked > 20_000
    msgs = consume_all(topics.settings.bootstrap(), topics.main, acked + counts[("e", "unknown")], timeout=90)
    values = [orjson.loads(m.value()) for m in msgs]
    on_topic = {v["event_id"] for v in values}
    records = [line.split(",") for line in ledger.read_text().splitlines()]
    acked_ids = {r[1] for r in records if r[2] == "acked"}
    assert acked_ids <= on_topic  # every acked event is on the topic
    stamped = {r[1]: r[3] for r in records if r[0] == "e"}  # the audit tells retention drops by these
    assert all(stamped[v["event_id"]] == v["timestamp"] for v in values if v["event_id"] in acked_ids)
    assert code == (0 if counts[("e", "unknown")] == 0 else 1)


def _cpu_s(pid: int) -> float:
    """The process's user and system CPU time so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_producer_waits_without_spinning_while_the_broker_is_paused(
    kafka_settings: KafkaSettings, tmp_path: Path, platform: Platform
) -> None:
    """A broker that leads fewer partitions than the connection's in-flight limit once made
    librdkafka's idempotent producer poll in a busy loop until it answered: two cores' worth on a
    3-node cluster, which starved the brokers it waited on. Two partitions on one broker are the
    smallest such case."""
    suffix = uuid.uuid4().hex[:10]
    main, dlq = f"two_partitions_{suffix}", f"two_partitions_{suffix}.dlq"
    ensure_topics(kafka_settings, topic=main, dlq_topic=dlq, partitions=2)
    topics = Topics(main, dlq, kafka_settings.model_copy(update={"topic": main, "dlq_topic": dlq}))
    broker = platform.kafka_procs[0]
    cmd = [sys.executable, "-m", "sensorpipe", "producer", "--rate", "20000", "--sensors", "1000"]
    p = subprocess.Popen(cmd, env=_env(topics, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _cpu_s(p.pid) > 0.5, 60, "the producer to start producing")
        time.sleep(2)
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            time.sleep(1)  # what was in flight stays unanswered from here on
            before, t0 = _cpu_s(p.pid), time.monotonic()
            time.sleep(5)
            share = (_cpu_s(p.pid) - before) / (time.monotonic() - t0)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert p.poll() is None, "the producer died while the broker was paused"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(120)
    # Making 20,000 events a second costs a fraction of a core; a busy loop costs a whole one.
    assert share < 0.6, f"the producer used {share:.0%} of a core while the broker did not answer"


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "-5"], "--rate"),
        (["--duplicate-ratio", "1.5"], "--duplicate-ratio"),
        (["--sensors", "0"], "--sensors"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_flags_get_one_clear_line(topics: Topics, tmp_path: Path, args: list[str], needle: str) -> None:
    out = run_producer(topics, tmp_path, *args, timeout=30)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


def _gauge(url: str, name: str) -> float | None:
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_live_configuration_is_applied_without_restart_and_bad_config_rejected(
    topics: Topics, db_dsn: str, tmp_path: Path, start_api: Callable[[ApiConfig], str]
) -> None:
    url = start_api(api_config(db_dsn, topics))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        mport = s.getsockname()[1]
    env = {**_env(topics, tmp_path), "SENSORPIPE_PRODUCER_METRICS_PORT": str(mport)}
    p = subprocess.Popen(
        [sys.executable, "-m", "sensorpipe", "producer", "--rate", "500", "--sensors", "10", "--api-url", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = f"http://127.0.0.1:{mport}/metrics"
    rate = "sensorpipe_producer_configured_rate"
    try:
        wait_until(lambda: _gauge(metrics, rate) == 500.0, 30, "the flag rate (nothing stored yet)")
        r = httpx.put(f"{url}/api/producer-config", json={"rate": 1500, "sensors": 20})
        assert r.status_code == 200, r.text
        wait_until(lambda: _gauge(metrics, rate) == 1500.0, 20, "the stored rate to be applied")
        # A configuration that does not validate (written around the API) is refused; the last
        # good one stays in force.
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute('INSERT INTO producer_config (config) VALUES (\'{"rate": -7, "sensors": 0}\')')
        assert httpx.get(f"{url}/api/producer-config").status_code == 503
        time.sleep(8)
        assert _gauge(metrics, rate) == 1500.0
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=60)
    assert "rejected the configuration" in err
    assert p.returncode == 0, err[-2000:]
