"""`sensorpipe bench soak` (`make soak`): the local stack under load long enough for its
bounds to matter, with days compressed into minutes.

- **Load:** a producer (with a ledger), a consumer, the compactor and the API, as separate
  processes, on the bench stack's broker and server. Producer, consumer and compactor share a
  simulated clock (contracts.clock) that runs `speed` times faster than the wall, from six
  simulated days ago, so day partitions roll over every few minutes.
- **Bounds that must trigger:** short tier retentions (raw 3 days, 1-minute rollups 4, 1-hour
  rollups 5) for time retention, with the compactor compacting every day before yesterday; a
  PostgreSQL share of 2.5 simulated days of rows for size retention; and, for the
  free-space floor, a small tmpfs among the consumer's watched folders that a ballast file
  fills for a minute (it needs root to mount, as CI has).
- **Reports over time:** RSS of every process, lag, and disk use against the shares, every
  10 s; API p99 for an aggregate and a summary at the start and at the end.
- **End:** the load stops, the backlog drains, and the audit runs. Events dropped by
  retention are counted as dropped (by their timestamps against the raw horizon), never as
  lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import orjson
import psycopg

from sensorpipe.contracts.clock import SimClock
from sensorpipe.contracts.disk import GiB, MiB, du, topic_limits
from sensorpipe.proof import results as res
from sensorpipe.proof.audit import AuditReport, audit
from sensorpipe.proof.measure import ProcStats, consumer_lag, free_port, platform_pids, scrape, wait_http, wrk
from sensorpipe.proof.memmap import resident_by_kind
from sensorpipe.proof.tmpfs import fill, small_tmpfs
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.procs import stop_pid
from sensorpipe.storage import bench as bq
from sensorpipe.storage import compaction, queries, retention

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench

DAY = 86_400
# Sizing assumptions for PostgreSQL's share (BENCHMARKS.md has what the storage stage and
# the soak measured): raw rows with their dedupe rows per event, with a margin for the pages
# a live store has not yet vacuumed; a metrics_1m row with its covering key.
BYTES_PER_EVENT = 430
ROLLUP_ROW_BYTES = 330
SAMPLE_S = 10.0
SAMPLE_ACTIVITY_S = 0.1
OUR_PROCESSES = ("producer", "consumer", "compactor", "api")  # memory maps taken with the API p99
FLOOR_FS = 64 * MiB  # the watched tmpfs that the ballast fills
FLOOR = 16 * MiB
# Raw rows are kept three simulated days: the compactor (grace one day) then has closed days to
# compact before time or size retention drops them, as a store kept for days has.
RAW_DAYS = 3
MINUTE_DAYS, HOUR_DAYS = 4, 5  # retention tiers nest: raw <= 1-minute <= 1-hour
HOT_DAYS_SHARE = 2.5  # PostgreSQL's share, in days of rows
COMPACT_EVERY_S = 10  # real seconds between compaction passes: 48 simulated minutes


@dataclass
class SoakPlan:
    minutes: float
    rate: int
    speed: float = 288.0  # a simulated day every 5 real minutes
    # A simulated minute passes in a fifth of a second, so every sensor writes a 1-minute
    # rollup row per 0.2 s: 288 times as many per event as at the wall's pace. Fewer sensors
    # keep the rollups' share of the store near what a real day has.
    sensors: int = 200
    kafka_share: int = 2 * GiB
    events_per_day: int = field(init=False)
    postgres_share: int = field(init=False)
    clock: SimClock = field(init=False)

    def __post_init__(self) -> None:
        self.events_per_day = int(self.rate * DAY / self.speed)
        rollups = MINUTE_DAYS * self.sensors * 1440 * ROLLUP_ROW_BYTES  # what the 1-minute tier keeps
        # Today and yesterday stay rows, and a closed day is compacted only after it closes: the
        # share holds two and a half days of rows, so size retention does not drop a day before
        # the compactor can take it; compacted days (about a twentieth of a day of rows each) fit.
        self.postgres_share = int(HOT_DAYS_SHARE * self.events_per_day * BYTES_PER_EVENT + rollups)
        # six simulated days before now at the start, so the run ends near the present
        start = (datetime.now(UTC) - timedelta(days=6)).replace(hour=12, minute=0, second=0, microsecond=0)
        self.clock = SimClock(start.timestamp(), self.speed, time.time())

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    def clock_env(self) -> dict[str, str]:
        """The clock for the producer and the consumer: both stand on the same simulated time."""
        c = self.clock
        return {
            "SENSORPIPE_CLOCK_START": str(c.start),
            "SENSORPIPE_CLOCK_SPEED": str(c.speed),
            "SENSORPIPE_CLOCK_ORIGIN": str(c.origin),
        }

    def simulated_now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


class ActivitySampler(threading.Thread):
    """A profile of the API's database time while its p99 is measured: every SAMPLE_ACTIVITY_S
    the API's running statements are read from pg_stat_activity, each counted under what it
    waits on (CPU when nothing) and its first words. A statement seen in k samples ran about
    k * SAMPLE_ACTIVITY_S seconds in all."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="activity-sampler", daemon=True)
        self.dsn = dsn
        self.counts: Counter[tuple[str, str]] = Counter()
        self.samples = 0
        self._done = threading.Event()

    def __enter__(self) -> ActivitySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(timeout=10)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._done.wait(SAMPLE_ACTIVITY_S):
                self.samples += 1
                self.counts.update(bq.activity(conn, queries.APPLICATION_NAME))

    def top(self, n: int = 6) -> res.Activity:
        return res.Activity(
            samples=self.samples,
            interval_s=SAMPLE_ACTIVITY_S,
            top=[res.Statement(wait=w, statement=q, seen=c) for (w, q), c in self.counts.most_common(n)],
        )


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class Soak:
    def __init__(self, b: Bench, plan: SoakPlan) -> None:
        self.b, self.plan = b, plan
        self.samples: list[res.SoakSample] = []
        self.api_p99 = res.Ends()
        self.memory = res.MemoryEnds()  # process -> resident MB by kind (proof.memmap), at each end
        self.floor_hold: res.FloorHold | None = None

    def run(self) -> res.SoakResult:
        b = self.b
        k = b.topic("soak")
        ensure_topics(
            k, topic=k.topic, dlq_topic=k.dlq_topic, limits=topic_limits(self.plan.kafka_share, k.partitions, 1)
        )
        self.dsn = b.database("soak")
        with small_tmpfs(FLOOR_FS, "soak-floor") as watched:
            return self._load(k, self._env(k, watched), watched)

    def _env(self, k: Any, watched: Path) -> dict[str, str]:
        plan = self.plan
        self.group = f"soak-{uuid.uuid4().hex[:6]}"
        return self.b.env(
            k,
            self.dsn,
            SENSORPIPE_CONSUMER_GROUP_ID=self.group,
            SENSORPIPE_DATABASE_RETENTION_DAYS=str(RAW_DAYS),
            SENSORPIPE_DATABASE_ROLLUP_1M_DAYS=str(MINUTE_DAYS),
            SENSORPIPE_DATABASE_ROLLUP_1H_DAYS=str(HOUR_DAYS),
            SENSORPIPE_DISK_POSTGRES_BYTES=str(plan.postgres_share),
            SENSORPIPE_DISK_WATCH=orjson.dumps([str(self.b.state_dir), str(watched)]).decode(),
            SENSORPIPE_DISK_FLOOR=str(FLOOR),
            SENSORPIPE_DISK_SIZE_CHECK_S="10",
            SENSORPIPE_PRODUCER_COMPRESSION=os.environ.get("SENSORPIPE_PRODUCER_COMPRESSION", "lz4"),
            **plan.clock_env(),
        )

    def _load(self, k: Any, env: dict[str, str], watched: Path) -> res.SoakResult:
        b, plan = self.b, self.plan
        port = free_port()
        api = b.spawn(["api"], {**env, "SENSORPIPE_API_PORT": str(port), "SENSORPIPE_API_DASHBOARD_DIR": "/none"})
        self.consumer_metrics = f"http://127.0.0.1:{(metrics_port := free_port())}/metrics"
        cons = b.spawn(["consumer"], {**env, "SENSORPIPE_CONSUMER_METRICS_PORT": str(metrics_port)})
        comp = b.spawn(["compactor", "--interval-s", str(COMPACT_EVERY_S), "--metrics-port", "0"], env)
        ledger = b.out / "soak-ledger.csv"
        ledger.unlink(missing_ok=True)
        prod = b.spawn(
            ["producer", "--rate", str(plan.rate), "--sensors", str(plan.sensors), "--ledger", str(ledger)], env
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/api/pipeline", 60)
            procs = {
                "producer": prod.pid,
                "consumer": cons.pid,
                "compactor": comp.pid,
                "api": api.pid,
                **platform_pids(b.state_dir),
            }
            stats = {n: ProcStats(pid, children=n == "postgres").start() for n, pid in procs.items()}
            self._watch(k, url, watched, stats, time.monotonic())
            stop_pid(prod.pid, signal.SIGTERM, 300)
            drained = self._drain(k)
            stop_pid(cons.pid, signal.SIGTERM, 120)
            stop_pid(comp.pid, signal.SIGTERM, 120)
            stop_pid(api.pid, signal.SIGTERM, 60)
            resources = {n: s.stop() for n, s in stats.items()}
        finally:
            for p in (prod, cons, comp, api):
                stop_pid(p.pid, signal.SIGTERM, 60)
        tiers = self._tiers()
        b.log("soak: auditing the ledger against the store")
        report = audit(self.dsn, k.bootstrap(), k.topic, [ledger])
        ledger.unlink(missing_ok=True)  # gigabytes; the audit's figures are kept
        return self._result(resources, drained, report, tiers)

    def _tiers(self) -> res.Tiers:
        """How far back each tier reaches at the end, in simulated days before the clock's
        now: time retention trimmed each to its days (raw 1, 1-minute 2, 1-hour 3)."""
        now = self.plan.simulated_now()
        with psycopg.connect(self.dsn) as conn:
            edges = bq.tier_edges(conn)
        back = {name: None if t is None else round((now - t).total_seconds() / DAY, 2) for name, t in edges.items()}
        return res.Tiers(raw=back["raw"], minute=back["1m"], hour=back["1h"])

    def _watch(self, k: Any, url: str, watched: Path, stats: dict[str, ProcStats], t0: float) -> None:
        plan, end = self.plan, t0 + self.plan.seconds
        p99_at = {"start": t0 + min(5 * 60, plan.seconds / 10), "end": end - 60}  # a field of Ends each
        hold_at = t0 + plan.seconds * 0.6
        while time.monotonic() < end:
            now = time.monotonic()
            self.samples.append(self._sample(k, stats, now - t0))
            for when, at in list(p99_at.items()):
                if now >= at:
                    memory = {n: resident_by_kind(st.pid) for n, st in stats.items() if n in OUR_PROCESSES}
                    setattr(self.memory, when, memory)
                    setattr(self.api_p99, when, self._api_p99(url))
                    del p99_at[when]
            if self.floor_hold is None and now >= hold_at:
                self.floor_hold = self._hold_at_floor(k, watched, stats, t0)
            time.sleep(SAMPLE_S)

    def _sample(self, k: Any, stats: dict[str, ProcStats], t: float) -> res.SoakSample:
        b = self.b
        hw = b.high_watermark(k)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            db = retention.store_bytes(conn)
            drops = retention.drop_totals(conn)
            closed = self.plan.simulated_now().date() - timedelta(days=1)  # the compactor's grace
            backlog = len(compaction.pending_days(conn, closed))
            _parts, compacted_events = compaction.compacted(conn)
        kafka = b.topic_bytes(k)
        return res.SoakSample(
            t=round(t),
            rss_mb={n: round(s.rss_mb, 1) for n, s in stats.items()},
            consumer_heap=self._consumer_heap(stats["consumer"].pid),
            pss_mb={n: round(s.pss_mb(), 1) for n, s in stats.items()},
            lag=consumer_lag(k, self.group, hw),
            produced=hw,
            kafka_bytes=kafka,
            postgres_bytes=db,
            wal_bytes=du(b.pg.data_dir() / "pg_wal"),
            drops={reason: days for reason, (days, _rows) in drops.items()},
            over_share=kafka > self.plan.kafka_share or db > self.plan.postgres_share,
            compaction_backlog=backlog,
            compacted_events=compacted_events,
        )

    def _consumer_heap(self, pid: int) -> dict[str, float] | None:
        """The consumer's memory profile (MB; Python's blocks in thousands): its anonymous
        resident memory beside what its allocators say they hold (consumer.metrics)."""
        scraped = scrape(self.consumer_metrics)
        anon = resident_by_kind(pid)
        if scraped is None or anon is None:
            return None
        mb = 1 / MiB
        return {
            "anonymous": anon["anonymous"] + anon["heap"],
            "malloc_in_use": round(scraped.get(("sensorpipe_consumer_heap_bytes", "in_use"), 0) * mb, 1),
            "malloc_free": round(scraped.get(("sensorpipe_consumer_heap_bytes", "free"), 0) * mb, 1),
            "fetch_queue": round(scraped.get(("sensorpipe_consumer_fetch_queue_bytes", ""), 0) * mb, 1),
            "python_kblocks": round(scraped.get(("sensorpipe_consumer_python_blocks", ""), 0) / 1000, 1),
        }

    def _api_p99(self, url: str) -> res.ApiWindow:
        now = self.plan.simulated_now()
        hour = now - timedelta(hours=1)
        day = now - timedelta(hours=24)
        agg = f"{url}/api/readings/aggregate?sensor_id=sensor-00042&bucket=1m&start={z(hour)}&end={z(now)}"
        summ = f"{url}/api/summary?start={z(day)}&end={z(now)}"
        self.b.log("soak: API p99 (aggregate, summary), 10 s each, with the API's statements sampled")
        got: dict[str, res.WindowedWrk] = {}
        for name, target in (("aggregate", agg), ("summary", summ)):
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                drops = retention.drop_totals(conn)
            with ActivitySampler(self.dsn) as sampler:
                run = wrk(target, 10)
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                dropped = {r: d for r, (d, _rows) in retention.drop_totals(conn).items()}
            got[name] = res.WindowedWrk(
                **msgspec.structs.asdict(run),
                activity=sampler.top(),
                drops_during={r: d - drops.get(r, (0, 0))[0] for r, d in dropped.items()},
            )
        return res.ApiWindow(simulated_at=z(now), aggregate=got["aggregate"], summary=got["summary"])

    def _hold_at_floor(self, k: Any, watched: Path, stats: dict[str, ProcStats], t0: float) -> res.FloorHold:
        """Fill the watched tmpfs under the floor for 60 s: consumption must pause and resume."""
        self.b.log("soak: filling the watched filesystem under the free-space floor for 60 s")
        fill(watched, leave=FLOOR // 2)
        time.sleep(5)  # the guard probes every 2 s; the batch in flight finishes
        before = self._stored()
        time.sleep(55)
        held = self._sample(k, stats, time.monotonic() - t0)
        self.samples.append(held)
        during = self._stored()
        (watched / "ballast").unlink()
        t1 = time.monotonic()
        while self._stored() == during and time.monotonic() - t1 < 60:
            time.sleep(0.5)
        return res.FloorHold(
            held_s=55,
            stored_while_held=during - before,
            lag_at_end_of_hold=held.lag,
            resumed_after_s=round(time.monotonic() - t1, 1),
        )

    def _stored(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            return bq.stored(conn)

    def _drain(self, k: Any) -> bool:
        self.b.log("soak: load stopped; draining the backlog")
        hw = self.b.high_watermark(k)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if consumer_lag(k, self.group, hw) == 0:
                return True
            time.sleep(2)
        return False

    def _result(
        self, resources: dict[str, res.Proc], drained: bool, report: AuditReport, tiers: res.Tiers
    ) -> res.SoakResult:
        return res.SoakResult(
            minutes=self.plan.minutes,
            rate=self.plan.rate,
            sensors=self.plan.sensors,
            speed=self.plan.speed,
            events_per_simulated_day=self.plan.events_per_day,
            shares=res.Shares(kafka=self.plan.kafka_share, postgres=self.plan.postgres_share),
            samples=self.samples,
            api_p99=self.api_p99,
            memory=self.memory,
            floor_hold=self.floor_hold,
            drained=drained,
            resources=resources,
            audit=report,
            tiers_at_end=tiers,
        )
