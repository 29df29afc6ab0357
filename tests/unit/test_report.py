"""The benchmark report, rendered from results as `bench.json` holds them: each test builds
that JSON's shape, which must load into the typed results (`proof.results`) before it renders."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sensorpipe.proof import report, results
from sensorpipe.proof.audit import AuditReport


def render(r: dict[str, Any], command: str) -> str:
    return report.render(msgspec.convert(r, results.BenchResults), command)


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
        "seconds": 60.0,
        "produced": produced,
        "drained": True,
        "lag_steady": True,
        "max_lag": 1,
        "max_backlog": 1,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
        "resources": {name: {"cpu_s": s, "peak_rss_mb": 1.0} for name, s in cpu_s.items()},
    }
    return {"machine": machine, "e2e": {"rates": [rate], "probes": [], "max_sustainable": 20_000}}


def test_cpu_per_event_against_the_transport_floor_and_the_ceiling_it_implies() -> None:
    r = _run({"producer": 10.0, "consumer": 10.0, "kafka": 10.0, "postgres": 50.0}, 1_000_000)
    text = render(r, "cmd")
    assert "| producer | 10.0 | 10.0 | 1.0 MB |" in text
    assert "| postgres | 50.0 | 50.0 | 1.0 MB |" in text
    assert "The transport floor, measured" not in text  # runs recorded before the floor
    floor = {
        "ProducerPerformance": 8.0,
        "ConsumerPerformance": 4.0,
        "kafka": 10.0,
        "COPY client": 3.0,
        "postgres": 15.0,
    }
    r["e2e"]["floor"] = {"events": 1_000_000, "cpu_us_per_event": floor}
    text = render(r, "cmd")
    assert "| ConsumerPerformance | 4.0 |" in text and "| **all** | **40.0** |" in text
    # 80 us per event against a floor of 40: exactly the 2x allowed
    assert "CPU per event ≤ 2 × the transport floor: met (80.0 us against 40.0 us, 2.00 ×)" in text
    # on 2 cores: at most 2,000,000 / 80 = 25,000 events/s, and 50,000 through the floor
    assert "2 cores could carry at most 25,000 events/s through sensorpipe, and 50,000 events/s" in text
    assert "by process" not in text
    r["e2e"]["floor"]["cpu_us_per_event"]["postgres"] = 5.0
    missed = render(r, "cmd")
    assert "**missed** (80.0 us against 30.0 us, 2.67 ×)" in missed
    assert "consumer 10.0 against 7.0 (ConsumerPerformance + COPY client); kafka 10.0 against 10.0" in missed
    assert "postgres 50.0 against 5.0 (postgres)" in missed


def test_each_section_names_the_machine_its_stage_ran_on() -> None:
    r = {**_run({"producer": 1.0}, 1000), **_storage(100.0)}
    earlier = {**r["machine"], "cpu": "earlier CPU", "cores": 4}
    floor = {"kafka": 1.0}
    r["e2e"].update(measured_at="T1", machine=earlier, floor={"events": 1000, "cpu_us_per_event": floor})
    r["storage"].update(measured_at="T2", machine=r["machine"])
    text = render(r, "cmd")
    assert "Measured T1 on earlier CPU, 4 cores." in text
    assert "Measured T2 on test CPU, 2 cores." in text
    assert "- **Machine (e2e):** earlier CPU, 4 cores" in text
    assert "- **Machine (storage):** test CPU, 2 cores" in text
    assert "4 cores could carry at most" in text  # the e2e ceiling uses its own machine's cores
    r["e2e"]["machine"] = r["machine"]
    one = render(r, "cmd")
    assert "- **Machine:** test CPU, 2 cores, 1.0 GiB" in one and "Machine (" not in one
    del r["e2e"]["machine"], r["storage"]["machine"]
    older = render(r, "cmd")  # stages recorded before machines were kept per stage
    assert "Measured T1 (machine not recorded)." in older and "- **Machine:** test CPU" in older


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


def test_storage_section_shows_where_a_rows_bytes_go() -> None:
    r = _storage(total_heap=70.0)
    r["storage"]["anatomy"] = {
        "dedupe": {
            "rows": 1000,
            "tuple": 105.0,
            "line_pointer": 4,
            "page_slack": 0.3,
            "indexes": {"processed_events_pkey": 77.1},
            "columns": {"content_hash": 8, "event_id": 37},
        }
    }
    out = render(r, "x")
    assert "| dedupe | 105.0 | 4 | 0.3 | processed_events_pkey 77.1 | event_id 37, content_hash 8 |" in out


def _soak(late_rss: float, end_p99: float, lost: int) -> dict[str, Any]:
    samples = [
        {
            "t": t,
            "rss_mb": {"consumer": 200.0 if t < 900 else late_rss},
            "lag": 10,
            "kafka_bytes": 1,
            "postgres_bytes": 2,
            "drops": {"size": 3},
            "over_share": False,
        }
        for t in range(0, 1800, 10)
    ]
    audit: dict[str, Any] = {f.name: 0 for f in fields(AuditReport)}
    audit.update(acked=100, stored=100, dropped_by_retention=7, lost=lost, counters={}, lost_sample=[])
    wrk = {"aggregate": {"p99_ms": 10.0}, "summary": {"p99_ms": 20.0}}
    return {
        "machine": _run({"producer": 1.0}, 1000)["machine"],
        "soak": {
            "minutes": 30,
            "rate": 20_000,
            "sensors": 200,
            "speed": 288,
            "events_per_simulated_day": 6_000_000,
            "shares": {"kafka": 2**31, "postgres": 2**32},
            "samples": samples,
            "api_p99": {"start": wrk, "end": {k: {"p99_ms": v["p99_ms"] * end_p99} for k, v in wrk.items()}},
            "floor_hold": {"held_s": 55, "stored_while_held": 0, "lag_at_end_of_hold": 5, "resumed_after_s": 1.0},
            "drained": True,
            "tiers_at_end": {"raw": 1.4, "1m": 2.4, "1h": 3.4},
            "audit": audit,
        },
    }


def test_soak_section_judges_each_target_from_the_samples() -> None:
    ok = render(_soak(late_rss=210.0, end_p99=1.2, lost=0), "x")
    assert "| consumer | 200.0 | 210.0 | 1.05 |" in ok and "- RSS flat: met" in ok
    assert "- API p99 at the end within 1.5x of the start: met" in ok
    assert "3 by size" in ok and "raw 1.4, 1-minute 2.4, 1-hour 3.4" in ok
    assert "- 0 lost and 0 duplicate rows: met" in ok
    bad = render(_soak(late_rss=230.0, end_p99=2.0, lost=1), "x")
    assert "- RSS flat: **missed**" in bad
    assert "within 1.5x of the start: **missed**" in bad
    assert "- 0 lost and 0 duplicate rows: **missed**" in bad


def test_soak_p99s_of_error_answers_are_not_judged() -> None:
    r = _soak(late_rss=210.0, end_p99=1.0, lost=0)
    r["soak"]["api_p99"]["start"]["aggregate"]["non_2xx"] = 39_609  # fast 400s, not aggregates
    out = render(r, "x")
    assert "| aggregate | 10.0 | 10.0 | 1.00 | 39,609 / 0 |" in out
    assert "within 1.5x of the start: not judged" in out


def test_soak_memory_maps_are_shown_start_to_end() -> None:
    r = _soak(late_rss=210.0, end_p99=1.0, lost=0)
    at = {"heap": 40.0, "anonymous": 60.0, "stack": 0.1, "files": 20.0}
    r["soak"]["memory"] = {"start": {"consumer": at}, "end": {"consumer": {**at, "anonymous": 90.0}}}
    assert "| consumer | 40.0 -> 40.0 | 60.0 -> 90.0 | 20.0 -> 20.0 |" in render(r, "x")


def test_soak_activity_shows_where_the_api_statements_spent_the_window() -> None:
    r = _soak(late_rss=210.0, end_p99=1.0, lost=0)
    r["soak"]["api_p99"]["end"]["summary"]["activity"] = {
        "samples": 100,
        "interval_s": 0.1,
        "top": [{"wait": "Lock:relation", "statement": "SELECT a || b FROM metrics", "seen": 37}],
    }
    r["soak"]["api_p99"]["end"]["summary"]["drops_during"] = {"size": 1, "time": 0}
    out = render(r, "x")
    assert "| end | summary | 1 size | Lock:relation | `SELECT a \\|\\| b FROM metrics` | 3.7 |" in out


def test_soak_shows_pss_beside_rss_when_sampled() -> None:
    r = _soak(late_rss=210.0, end_p99=1.0, lost=0)
    assert "PSS minutes 5-10" not in render(r, "x")  # runs recorded before PSS was sampled
    for s in r["soak"]["samples"]:
        s["pss_mb"] = {"consumer": 100.0 if s["t"] < 900 else 105.0}
    assert "| consumer | 100.0 | 105.0 | 1.05 |" in render(r, "x")


def test_soak_shows_the_consumers_heap_profile_when_sampled() -> None:
    r = _soak(late_rss=210.0, end_p99=1.0, lost=0)
    assert "memory profile" not in render(r, "x")
    for s in r["soak"]["samples"]:
        late = s["t"] >= 900
        s["consumer_heap"] = {
            "anonymous": 80.0 if late else 50.0,
            "malloc_in_use": 30.0,
            "malloc_free": 40.0 if late else 12.0,
            "fetch_queue": 1.5,
            "python_kblocks": 300.0,
        }
    r["soak"]["samples"][3]["consumer_heap"] = None  # the consumer did not answer once
    out = render(r, "x")
    assert "| anonymous and heap mappings, resident (MB) | 50.0 | 80.0 | +30.0 | 80.0 |" in out
    assert "| malloc: held free in its arenas (MB) | 12.0 | 40.0 | +28.0 | 40.0 |" in out
    assert "| malloc: in use (MB) | 30.0 | 30.0 | +0.0 | 30.0 |" in out


def test_a_missed_memory_target_points_at_its_decision_record() -> None:
    flat = render(_soak(late_rss=210.0, end_p99=1.0, lost=0), "x")
    assert "009-consumer-memory.md" not in flat
    assert "`docs/decisions/009-consumer-memory.md`" in render(_soak(late_rss=230.0, end_p99=1.0, lost=0), "x")


def test_results_survive_a_round_trip_through_bench_json(tmp_path: Path) -> None:
    r = msgspec.convert(_soak(late_rss=210.0, end_p99=1.0, lost=3), results.BenchResults)
    r.storage = msgspec.convert(_storage(total_heap=70.0)["storage"], results.StorageResult)
    results.save(r, tmp_path / "bench.json")
    back = results.load(tmp_path / "bench.json")
    assert back == r
    assert back.soak is not None and back.soak.audit.lost == 3 and back.soak.tiers_at_end is not None
    assert back.soak.tiers_at_end.minute == 2.4  # the JSON's "1m"
    assert results.load(tmp_path / "none.json") == results.BenchResults()


def test_a_result_missing_a_measured_field_does_not_load() -> None:
    r = _storage(total_heap=70.0)
    del r["storage"]["codecs"][0]["wal_bytes_per_event"]
    with pytest.raises(msgspec.ValidationError, match="wal_bytes_per_event"):
        render(r, "x")


def test_a_stage_recorded_in_an_older_shape_is_left_out_not_fatal(tmp_path: Path) -> None:
    r = _storage(total_heap=70.0)
    r["e2e"] = _run({"producer": 1.0}, 1000)["e2e"]
    del r["storage"]["codecs"][0]["wal_bytes_per_event"]  # a field this version requires
    (tmp_path / "bench.json").write_bytes(msgspec.json.encode(r))
    said: list[str] = []
    back = results.load(tmp_path / "bench.json", said.append)
    assert back.storage is None and back.e2e is not None and back.machine is not None
    assert len(said) == 1 and "storage" in said[0]


def _wrk(p99: float) -> dict[str, Any]:
    return {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": p99, "requests_per_s": 100, "non_2xx": 0}


@pytest.mark.parametrize(("cold_p99", "verdict"), [(9.0, "met"), (21.0, "**missed**")])
def test_compacted_readings_are_judged_against_the_hot_rows_of_the_same_run(cold_p99: float, verdict: str) -> None:
    endpoints = {
        "readings (a different sensor each request, 1 h of hot rows)": _wrk(10.0),
        "readings (a different sensor each request, 1 h of a compacted day)": _wrk(cold_p99),
    }
    api = {"rows": 10, "load_seconds": 1.0, "endpoints": endpoints, "api_process": {"peak_rss_mb": 1.0, "cpu_s": 1.0}}
    text = render({"api": api}, "cmd")
    assert f"readings of a compacted hour p99 ≤ 2 × the hot rows' p99: {verdict} ({cold_p99} against 10.0 ms" in text


def test_the_soak_reports_whether_compaction_kept_up() -> None:
    def sample(t: int, backlog: int | None) -> dict[str, Any]:
        return {
            "t": t,
            "rss_mb": {},
            "lag": 0,
            "kafka_bytes": 0,
            "postgres_bytes": 0,
            "drops": {},
            "over_share": False,
            "compaction_backlog": backlog,
            "compacted_events": 5 * t,
        }

    def soak(backlogs: list[int | None]) -> str:
        samples = [sample(10 * i, b) for i, b in enumerate(backlogs)]
        audit = {
            f.name: ([] if f.name == "lost_sample" else {} if f.name == "counters" else 0) for f in fields(AuditReport)
        }
        sk = {
            "minutes": 1.0,
            "rate": 1,
            "speed": 288.0,
            "events_per_simulated_day": 1,
            "drained": True,
            "shares": {"kafka": 1, "postgres": 1},
            "samples": samples,
            "audit": audit,
        }
        return render({"soak": sk}, "cmd")

    assert "compaction keeps up (closed days holding rows never more than 1" in soak([0, 1, 0, 1])
    assert ": met (most 1;" in soak([0, 1, 0, 1])
    assert ": **missed** (most 3; first half 1, second half 3;" in soak([0, 1, 2, 3])
    assert "compaction keeps up" not in soak([None, None])  # a run without the compactor
