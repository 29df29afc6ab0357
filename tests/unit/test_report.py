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
