"""The peer end to end: the producer offers the e2e stage's rates, and the peer (its fastest
drain configuration) writes them, so its latency from event time to a queryable row and its
CPU per event stand beside ours at the same rates.

As in the e2e stage: 2,000 sensors, the producer at each rate for the same time, then a drain
of whatever is left; latency is the row's insert time less its event time (`ingested_at -
ts`, the peer's table stamps it as `metrics` does), and CPU is per produced event, by
process, over the whole run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sensorpipe.proof import peer
from sensorpipe.proof import results as res
from sensorpipe.proof.measure import ProcStats, consumer_lag, platform_pids
from sensorpipe.proof.peer_stage import worker
from sensorpipe.storage import peer as sq

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

RATES = (5000, 10000, 20000)  # the e2e stage's
PLAN = peer.SinkPlan(1, True)  # the peer's fastest drain per CPU-second


def peer_rates(b: Bench) -> list[res.PeerRate]:
    seconds = 20.0 if b.quick else 60.0
    return [peer_rate(b, rate, seconds) for rate in RATES]


def peer_rate(b: Bench, rate: int, seconds: float) -> res.PeerRate:
    b.log(f"peer: Kafka Connect + Debezium ({PLAN.label}) at {rate:,} events/s for {seconds:.0f}s")
    k = b.topic(f"peer_e2e{rate}")
    w, dsn = worker(b, k, f"peer_e2e{rate}", PLAN)
    pids = platform_pids(b.state_dir)
    with w:
        w.wait_running()
        prod = b.spawn(["producer", "--rate", str(rate), "--sensors", "2000", "--duration", str(seconds)], b.env(k))
        stats = {
            "producer": ProcStats(prod.pid).start(),
            "connect": ProcStats(w.pid).start(),
            "kafka": ProcStats(pids["kafka"]).start(),
            "postgres": ProcStats(pids["postgres"], children=True).start(),
        }
        prod.wait(seconds + 60)
        hw = b.high_watermark(k)
        deadline = time.monotonic() + 120
        drained = False
        while time.monotonic() < deadline and not w.failed_tasks():
            if consumer_lag(k, w.group, hw) == 0:
                drained = True
                break
            time.sleep(1.0)
        costs = {n: s.stop() for n, s in stats.items()}
        failed = w.failed_tasks()
    rows, _span, p50, p99 = sq.span(dsn)
    per = 1e6 / max(hw, 1)
    return res.PeerRate(
        rate=rate,
        produced=hw,
        stored=rows,
        drained=drained,
        p50_ms=None if p50 is None else round(p50, 1),
        p99_ms=None if p99 is None else round(p99, 1),
        cpu_us_per_event={n: round(c.cpu_s * per, 2) for n, c in costs.items()},
        peak_rss_mb=costs["connect"].peak_rss_mb,
        failed=failed,
    )
