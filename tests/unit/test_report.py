"""The benchmark report's end-to-end CPU budget, computed from the measured resources."""

from __future__ import annotations

from typing import Any

from sensorpipe.proof.report import render


def _run(cpu_s: dict[str, float], produced: int) -> dict[str, Any]:
    machine = {
        "cpu": "test CPU",
        "cores": 2,
        "memory_gib": 1.0,
        "python": "3",
        "kafka": "4",
        "librdkafka": "2",
        "confluent_kafka": "2",
        "postgresql": "15",
    }
    rate = {
        "rate": 20_000,
        "produced": produced,
        "drained": True,
        "lag_steady": True,
        "max_lag": 1,
        "max_backlog": 1,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
        "resources": {name: {"cpu_s": s, "peak_rss_mb": 1.0} for name, s in cpu_s.items()},
    }
    return {"machine": machine, "e2e": {"rates": [rate], "probes": [], "max_sustainable": 20_000}}


def test_cpu_per_event_and_the_ceiling_it_implies() -> None:
    text = render(_run({"producer": 10.0, "consumer": 10.0, "kafka": 10.0, "postgres": 50.0}, 1_000_000), "cmd")
    assert "| producer | 10.0 | 10.0 | 1.0 MB |" in text
    assert "| postgres | 50.0 | 50.0 | 1.0 MB |" in text
    # 80 us per event on 2 cores: at most 2,000,000 / 80 = 25,000 events/s
    assert "Together 80.0 us of CPU per event" in text
    assert "at most 25,000 events/s" in text
    assert "40,000/s would need at most 50.0 us per event" in text


def _storage(total_heap: float) -> dict[str, Any]:
    codec = {
        "events": 1000,
        "kafka_bytes_per_event": 60.5,
        "producer_us_per_event": 5.0,
        "broker_us_per_event": 3.0,
        "consumer_us_per_event": 9.0,
        "consumer_events_per_s": 50_000,
        "wal_bytes_per_event": 700.0,
    }
    return {
        "machine": _run({"producer": 1.0}, 1000)["machine"],
        "storage": {
            "events": 1000,
            "codecs": [{"codec": c, **codec} for c in ("none", "lz4", "zstd")],
            "postgres": {"raw rows": {"heap": total_heap, "indexes": 40.0}, "dedupe": {"heap": 50.0, "indexes": 30.0}},
            "postgres_bytes_per_event": total_heap + 120.0,
            "references": [["Gorilla: 1.37 bytes per point", "VLDB 2015"]],
        },
    }


def test_storage_section_marks_the_hot_row_target() -> None:
    met = render(_storage(total_heap=70.0), "x")
    assert "| zstd | 60.5 | 5.0 | 3.0 | 9.0 | 50,000 | 700.0 |" in met
    assert "| raw rows | 70.0 | 40.0 |" in met
    assert "hot rows ≤ 200 bytes per event: met (190.0)" in met
    assert "- Gorilla: 1.37 bytes per point (VLDB 2015)" in met
    missed = render(_storage(total_heap=95.0), "x")
    assert "hot rows ≤ 200 bytes per event: **missed** (215.0)" in missed
