"""The Connect peer's configuration, and how its results are described and reported."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sensorpipe.proof import peer, report_peer
from sensorpipe.proof import results as res
from sensorpipe.proof.peer_check import Case, _describe

TARGET = peer.Target(
    bootstrap="127.0.0.1:9092", topic="t", jdbc_url="jdbc:postgresql://127.0.0.1:5432/db", user="u", password="p:w=d"
)


def test_the_sink_upserts_on_the_tables_key_and_dead_letters_converter_errors() -> None:
    props = peer.connector_properties(TARGET, peer.SinkPlan(tasks=2, unnest=False), "peer-x")
    assert props["connector.class"] == "io.debezium.connector.jdbc.JdbcSinkConnector"
    assert (props["insert.mode"], props["primary.key.mode"], props["primary.key.fields"]) == (
        "upsert",
        "record_value",
        "event_id,ts",
    )
    assert props["use.reduction.buffer"] == "false"
    assert (props["tasks.max"], props["dialect.postgres.unnest.insert.enabled"], props["batch.size"]) == (
        "2",
        "false",
        "2000",
    )
    assert props["consumer.override.max.poll.records"] == props["batch.size"]  # full batches
    assert props["transforms.rename.renames"] == "timestamp:ts"
    assert (props["errors.tolerance"], props["errors.deadletterqueue.topic.name"]) == ("all", "t-peer-dlq")


def test_the_worker_reads_plain_json_with_the_contracts_schema(tmp_path: Path) -> None:
    props = peer.worker_properties(TARGET, tmp_path, 8083)
    schema = json.loads(props["value.converter.schema.content"])
    assert [f["field"] for f in schema["fields"]] == ["sensor_id", "event_id", "timestamp", "value", "seq"]
    assert not any(f["optional"] for f in schema["fields"])
    assert props["listeners"] == "http://127.0.0.1:8083" and props["consumer.auto.offset.reset"] == "earliest"


def test_the_properties_file_is_private_and_escaped(tmp_path: Path) -> None:
    path = tmp_path / "c.properties"
    peer._write_properties(path, {"connection.password": "p:w=d", "k": "a\\b"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "connection.password=p\\:w\\=d\nk=a\\\\b\n"


def test_a_case_is_described_by_what_the_sink_kept() -> None:
    c = Case("reused", positions=[(0, 1), (0, 2), (1, 5)], ids=["a", "a", "b"], first_value={"a": 1.0, "b": 2.0})
    assert _describe(c, [("a", 1.0), ("b", 2.0)], {}) == "rows stored: 2"
    twice = _describe(c, [("a", 1.0), ("a", 3.0)], {})
    assert twice == "rows stored: 2; ids with two rows: 1; rows holding a later copy's value: 1"
    dead = {(0, 2): "wrong_type", (1, 5): "DataException", (9, 9): "other"}
    assert _describe(c, [], dead) == "nothing stored; dead-lettered: 2 (DataException, wrong_type)"


def _run(sink: str, per_cpu_s: int, failed: list[str] | None = None) -> res.SinkRun:
    return res.SinkRun(
        sink=sink,
        events=1000,
        seconds=1.0,
        events_per_s=1000,
        cpu_us_per_event={"consumer" if "sensorpipe" in sink else "connect": 5.0, "postgres": 7.5, "kafka": 1.0},
        events_per_cpu_s=per_cpu_s,
        peak_rss_mb=100.0,
        failed=failed or [],
    )


def test_the_report_judges_us_against_the_peers_best_configuration() -> None:
    p = res.PeerResult(
        peer="Apache Kafka Connect 4.2.1, Debezium JDBC sink 3.6.0.Final",
        events=1000,
        runs=[_run("sensorpipe consumer", 90_000), _run("Connect (1 task)", 20_000), _run("Connect (2 tasks)", 25_000)],
        correctness=res.Correctness(
            peer_configs=["1 task, unnest on", "1 task, unnest off"],
            outcomes=[
                res.Outcome(
                    case="poison: wrong_type", fed=1, ours="nothing stored", peers=["rows stored: 1", "nothing stored"]
                )
            ],
            peer_failed=[["org.apache.kafka.connect.errors.ConnectException: no partition"], []],
        ),
    )
    text = "\n".join(report_peer.peer(p))
    assert "| sensorpipe consumer | 1,000 | 1.0 | 90,000 | 5.0 | 7.5 | 1.0 | 100.0 MB |" in text
    assert "≥ 3 × the peer's events per CPU-second: met (3.60 × its best configuration, Connect (2 tasks))" in text
    assert (
        "| fed | messages | sensorpipe | Connect + Debezium (1 task, unnest on) | Connect + Debezium (1 task," in text
    )
    assert "| poison: wrong_type | 1 | nothing stored | rows stored: 1 | nothing stored |" in text
    assert "(1 task, unnest on) stopped on: `org.apache.kafka.connect.errors.ConnectException: no partition`" in text
    assert "(1 task, unnest off) stopped on" not in text
    assert "where the CPU goes" not in text
    p.runs[0].events_per_cpu_s = 50_000
    profile = res.Profile(seconds=1.0, events=1, events_per_s=1, share={"decode": 0.5, "kafka": 0.2, "x": 0.1}, text="")
    missed = "\n".join(report_peer.peer(p, profile))
    assert "**missed** (2.00 ×" in missed
    assert "the sink process 5.0 us per event for sensorpipe against 5.0 for the peer; PostgreSQL 7.5" in missed
    assert "its profile in the consumer section): decode 50%, kafka 20%" in missed


def test_a_failed_task_is_reported_by_its_root_cause() -> None:
    trace = (
        "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.\n"
        "\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:636)\n"
        "Caused by: org.apache.kafka.connect.errors.ConnectException: JDBC sink connector failure\n"
        'Caused by: org.postgresql.util.PSQLException: ERROR: no partition of relation "peer_metrics" found for row\n'
    )
    assert peer._root_cause(trace) == (
        'org.postgresql.util.PSQLException: ERROR: no partition of relation "peer_metrics" found for row'
    )
    assert peer._root_cause("java.lang.OutOfMemoryError: heap\n\tat x") == "java.lang.OutOfMemoryError: heap"
    assert peer._root_cause("") == ""


def test_the_rates_table_puts_ours_and_the_peer_side_by_side() -> None:
    ours = res.E2EResult(
        rates=[
            res.RateRun(
                rate=20_000,
                seconds=60.0,
                produced=1_200_000,
                drained=True,
                max_lag=1,
                max_backlog=1,
                lag_steady=True,
                latency_ms=res.Latency(p50=180.0, p95=250.0, p99=290.0, rows=1_200_000),
                resources={
                    "producer": res.Proc(peak_rss_mb=70.0, cpu_s=6.0),
                    "consumer": res.Proc(peak_rss_mb=90.0, cpu_s=6.0),
                    "postgres": res.Proc(peak_rss_mb=2000.0, cpu_s=24.0),
                },
            )
        ],
        max_sustainable=50_000,
    )
    theirs = res.PeerRate(
        rate=20_000,
        produced=1_200_000,
        stored=1_200_000,
        drained=True,
        p50_ms=400.0,
        p99_ms=900.0,
        cpu_us_per_event={"producer": 5.0, "connect": 12.0, "kafka": 2.0, "postgres": 6.0},
        peak_rss_mb=950.0,
    )
    text = "\n".join(report_peer._rates([theirs], ours))
    assert "| 20,000/s | sensorpipe | 1,200,000 | 1,200,000 | 180.0 | 290.0 | 30.0 | 90.0 MB |" in text
    assert "| 20,000/s | Connect + Debezium | 1,200,000 | 1,200,000 | 400.0 | 900.0 | 25.0 | 950.0 MB |" in text
    assert report_peer._rates([], ours) == []
