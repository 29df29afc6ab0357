"""The transport floor of the end-to-end stage: the least CPU any pipeline of this shape
spends per event, measured in the same run on the same kind of events.

- Kafka's ProducerPerformance writes them (payloads drawn from real encoded events, acks=all,
  idempotent, the producer's codec), and the broker takes them in;
- Kafka's ConsumerPerformance reads them back, and the broker serves them;
- a binary COPY writes the same number of rows into a table with one unique key.

Nothing here validates, deduplicates, aggregates or keeps offsets: what sensorpipe spends
beyond this floor is the cost of those guarantees. The tools' CPU is their whole run
(start-up included, read from the kernel's accounting of the finished child process); the
broker's and PostgreSQL's are counted while each step runs.
"""

from __future__ import annotations

import random
import resource
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sensorpipe.contracts.events import encode_event
from sensorpipe.proof import results as res
from sensorpipe.proof.measure import ProcStats, platform_pids
from sensorpipe.runtime.procs import PlatformError
from sensorpipe.storage import bench as bq

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

PAYLOADS = 10_000  # distinct encoded events ProducerPerformance draws from


def transport_floor(b: Bench, n: int) -> res.Floor:
    k = b.topic("floor")
    pids = platform_pids(b.state_dir)
    payloads = _payload_file(b.out / "floor-payloads.txt")
    b.log(f"e2e: transport floor, ProducerPerformance writes {n:,} events")
    produce = b.kafka_tool(
        "ProducerPerformance",
        *("--topic", k.topic, "--num-records", str(n), "--payload-file", str(payloads), "--throughput", "-1"),
        *b.perf_producer_props(k),
    )
    tool_in, broker_in = _run_tool(produce, pids["kafka"])
    b.log(f"e2e: transport floor, ConsumerPerformance reads {n:,} events")
    consume = b.kafka_tool(
        "ConsumerPerformance",
        *("--bootstrap-server", k.bootstrap(), "--topic", k.topic, "--messages", str(n)),
        *("--group", f"bench-floor-{uuid.uuid4().hex[:6]}", "--timeout", "120000"),
    )
    tool_out, broker_out = _run_tool(consume, pids["kafka"])
    b.log(f"e2e: transport floor, COPY of {n:,} rows into a table with one unique key")
    client, server = _copy(b, n, pids["postgres"])
    per = 1e6 / n
    cpu = {
        "ProducerPerformance": tool_in,
        "ConsumerPerformance": tool_out,
        "kafka": broker_in + broker_out,
        "COPY client": client,
        "postgres": server,
    }
    return res.Floor(events=n, cpu_us_per_event={name: round(s * per, 2) for name, s in cpu.items()})


def _payload_file(path: Path) -> Path:
    """Real encoded events, one per line, for ProducerPerformance to draw from."""
    rng = random.Random(11)
    now_ms = int(time.time() * 1000)
    lines = [
        encode_event(
            f"sensor-{i % 2000:05d}", str(uuid.uuid4()), now_ms - rng.randrange(60_000), rng.uniform(0, 100), i
        )
        for i in range(PAYLOADS)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines))
    return path


def _run_tool(cmd: list[str], broker_pid: int) -> tuple[float, float]:
    """Runs a Kafka tool to completion; (its CPU seconds, the broker's meanwhile)."""
    broker = ProcStats(broker_pid).start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = broker.stop()
    if out.returncode != 0:
        name = next(a for a in cmd if a.startswith("org.apache.kafka.tools.")).rsplit(".", 1)[1]
        raise PlatformError(f"{name} failed: {out.stderr[-500:]}")
    tool = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return tool, served.cpu_s


def _copy(b: Bench, n: int, postgres_pid: int) -> tuple[float, float]:
    """COPYs `n` rows into a fresh table with one unique key; (this process's CPU, the
    server's)."""
    dsn = b.database("floor")
    bq.create_floor_table(dsn)
    start = datetime.now(UTC) - timedelta(minutes=30)
    rows = [
        (start + timedelta(microseconds=i * 1000), f"sensor-{i % 2000:05d}", str(uuid.uuid4()), float(i % 997), i)
        for i in range(n)
    ]
    server = ProcStats(postgres_pid, children=True).start()
    t0 = time.process_time()
    bq.copy_floor(dsn, rows)
    client = time.process_time() - t0
    return client, server.stop().cpu_s
