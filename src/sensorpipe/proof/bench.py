"""`sensorpipe bench [producer|consumer|e2e|api|storage|all]`: every stage against a reference measured in
the same run, on the real local stack. Writes BENCHMARKS.md, raw JSON and PNG charts.

Each stage uses topics, consumer groups and databases of its own, so stages never see each
other's data. Processes run as they do in production (subprocesses of `sensorpipe`), and
their CPU time and peak RSS are read from /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from sensorpipe.contracts.disk import du
from sensorpipe.contracts.events import encode_event
from sensorpipe.proof import results as res
from sensorpipe.proof.floor import transport_floor
from sensorpipe.proof.measure import (
    ProcStats,
    consumer_lag,
    lag_steady,
    machine,
    naive_consume,
    platform_pids,
    profile_consumer,
)
from sensorpipe.runtime.bootstrap import ensure_topics
from sensorpipe.runtime.kafka import admin_client, classpath, java_binary
from sensorpipe.runtime.postgres import LocalPostgres
from sensorpipe.runtime.procs import PlatformError
from sensorpipe.settings import DatabaseSettings, KafkaSettings, ProducerSettings
from sensorpipe.storage import bench as bq
from sensorpipe.storage.migrate import migrate
from sensorpipe.storage.writer import BatchWriter

Log = Callable[[str], None]
STAGES = ("producer", "consumer", "e2e", "api", "storage", "peer")


class Bench:
    def __init__(
        self, state_dir: Path, out_dir: Path, log: Log, quick: bool = False, soak: tuple[float, int] = (30.0, 20_000)
    ) -> None:
        self.kafka = KafkaSettings()
        self.db = DatabaseSettings()
        if not self.db.local:
            raise PlatformError("the benchmark creates databases of its own: run it on the local stack")
        self.pg = LocalPostgres(self.db, state_dir)
        self.state_dir = state_dir
        self.out = out_dir
        self.log = log
        self.quick = quick
        self.results = res.BenchResults()
        self.topics: list[str] = []  # created by this run, deleted after each stage
        self.soak_plan = soak  # minutes, events/s (`sensorpipe bench soak`)

    # -- helpers -----------------------------------------------------------------------------
    def topic(self, name: str) -> KafkaSettings:
        t = f"bench_{name}_{uuid.uuid4().hex[:6]}"
        k = self.kafka.model_copy(update={"topic": t, "dlq_topic": f"{t}.dlq"})
        self.topics += [t, f"{t}.dlq"]
        ensure_topics(k, topic=t, dlq_topic=f"{t}.dlq")
        return k

    def drop_topics(self) -> None:
        """Delete the topics this run created: a full run writes several GB of events, and
        left behind they fill the disk within a day of benchmarking."""
        if not self.topics:
            return
        admin = admin_client(self.kafka.bootstrap(), security_protocol=self.kafka.security_protocol)
        existing = admin.list_topics(timeout=30).topics
        # once each (a name given twice makes the broker refuse the request), and only those
        # that exist (a topic a sink creates may never have been made)
        gone = [t for t in dict.fromkeys(self.topics) if t in existing]
        for name, fut in (admin.delete_topics(gone, operation_timeout=30) if gone else {}).items():
            try:
                fut.result(60)
            except KafkaException as e:
                self.log(f"could not delete benchmark topic {name}: {e}")
        self.topics = []

    def database(self, name: str) -> str:
        dsn = self.pg.create_database(f"bench_{name}")
        migrate(dsn)
        BatchWriter(dsn, self.db.retention_days).maintain(datetime.now(UTC).date())
        return dsn

    def env(self, k: KafkaSettings, dsn: str | None = None, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap(),
            "SENSORPIPE_KAFKA_TOPIC": k.topic,
            "SENSORPIPE_KAFKA_DLQ_TOPIC": k.dlq_topic,
            "SENSORPIPE_PRODUCER_METRICS_PORT": "0",
            "SENSORPIPE_CONSUMER_METRICS_PORT": "0",
            "SENSORPIPE_STATE_DIR": str(self.state_dir / "bench"),
        }
        if dsn:
            env["SENSORPIPE_DATABASE_URL"] = dsn
        env.update(extra)
        return env

    def spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A `sensorpipe` subprocess; its output goes to a log file (never an unread pipe, which
        would block it once full)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / f"{args[0]}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "sensorpipe", *args], env=env, stdout=subprocess.DEVNULL, stderr=log
            )

    def kafka_tool(self, tool: str, *args: str) -> list[str]:
        """The command that runs one of Kafka's tools (org.apache.kafka.tools.`tool`) from the
        broker's jars. Its JVM temporary files go to the run's folder, emptied first (a JVM
        extracts native libraries there at every start)."""
        tmp = self.out / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cp = classpath(self.kafka.libs_dir)
        return [
            java_binary(),
            "-Xmx512m",
            f"-Djava.io.tmpdir={tmp}",
            "-cp",
            cp,
            f"org.apache.kafka.tools.{tool}",
            *args,
        ]

    @staticmethod
    def perf_producer_props(k: KafkaSettings) -> list[str]:
        """ProducerPerformance's client settings: acks=all, idempotent, large batches, and the
        codec our producer uses."""
        return [
            "--producer-props",
            f"bootstrap.servers={k.bootstrap()}",
            *("acks=all", "enable.idempotence=true", "linger.ms=20", "batch.size=1000000"),
            f"compression.type={ProducerSettings().compression}",
        ]

    def high_watermark(self, k: KafkaSettings) -> int:
        """Sum of the topic's high watermarks; retried while a new topic's leaders settle."""
        c = Consumer({"bootstrap.servers": k.bootstrap(), "group.id": "bench-hw", "log_level": 0})
        try:
            for attempt in range(50):
                try:
                    md = c.list_topics(k.topic, timeout=10)
                    return sum(
                        c.get_watermark_offsets(TopicPartition(k.topic, p), timeout=10)[1]
                        for p in md.topics[k.topic].partitions
                    )
                except KafkaException:
                    if attempt == 49:
                        raise
                    time.sleep(0.2)
            raise AssertionError("unreachable")
        finally:
            c.close()

    # -- 1. producer ---------------------------------------------------------------------------
    def producer(self) -> res.ProducerResult:
        runs: list[res.ProducerRun] = []
        window = 8.0 if self.quick else 15.0
        # An unmeasured run first, on a topic of its own, so that no measured run pays for the
        # broker's warm-up. Producer and broker share two cores, and one run differs from the
        # next by up to 15%: each size runs twice, interleaved, and so does the reference.
        k = self.topic("prodwarm")
        self.log("producer: warm-up, 5s, not measured")
        warm = self.spawn(["producer", "--rate", "1000000", "--sensors", "1000", "--duration", "5"], self.env(k))
        warm.wait(60)
        for sensors in (1000, 5000, 1000, 5000):
            k = self.topic(f"prod{sensors}")
            self.log(f"producer: {sensors} sensors, unthrottled, {window:.0f}s window")
            p = self.spawn(
                ["producer", "--rate", "1000000", "--sensors", str(sensors), "--duration", str(window + 4)], self.env(k)
            )
            stats = ProcStats(p.pid).start()
            time.sleep(2.0)  # warm-up: connections, the first batches
            hw0, t0 = self.high_watermark(k), time.monotonic()
            time.sleep(window)
            hw1, t1 = self.high_watermark(k), time.monotonic()
            p.wait(120)
            cost = stats.stop()
            runs.append(
                res.ProducerRun(
                    sensors=sensors,
                    events_per_s=round((hw1 - hw0) / (t1 - t0)),
                    exit=p.returncode,
                    peak_rss_mb=cost.peak_rss_mb,
                    cpu_s=cost.cpu_s,
                )
            )
        size = len(encode_event("sensor-00042", str(uuid.uuid4()), int(time.time() * 1000), 21.53, 123456))
        k = self.topic("perf")
        records = 1_000_000 if self.quick else 3_000_000
        self.log(f"producer: Kafka ProducerPerformance, {records:,} records of {size} bytes, acks=all, idempotent")
        cmd = self.kafka_tool(
            "ProducerPerformance",
            *("--topic", k.topic, "--num-records", str(records), "--record-size", str(size), "--throughput", "-1"),
            *self.perf_producer_props(k),
        )
        rates = []
        for _ in range(2):
            perf = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
            m = re.search(r"(\d+) records sent, ([\d.]+) records/sec", perf.stdout)
            if not m:
                raise PlatformError(f"ProducerPerformance failed: {perf.stderr[-500:]}")
            rates.append(round(float(m.group(2))))
        ref = res.ProducerReference(
            tool="org.apache.kafka.tools.ProducerPerformance",
            record_bytes=size,
            events_per_s=round(sum(rates) / len(rates)),
            runs=rates,
        )
        for r in runs:
            r.ratio_to_reference = round(r.events_per_s / ref.events_per_s, 2)
        mean = sum(r.events_per_s for r in runs) / len(runs)
        return res.ProducerResult(runs=runs, reference=ref, mean_ratio_to_reference=round(mean / ref.events_per_s, 2))

    # -- 2. consumer ---------------------------------------------------------------------------
    def preload(self, n: int, name: str = "cons", **env: str) -> tuple[KafkaSettings, res.Proc]:
        """A new topic with `n` events of 2,000 sensors, the producer unthrottled; returns it
        with the producer's CPU and peak RSS."""
        k = self.topic(name)
        self.log(f"{name}: preloading {n:,} events")
        p = self.spawn(["producer", "--rate", "1000000", "--sensors", "2000", "--duration", "600"], self.env(k, **env))
        stats = ProcStats(p.pid).start()
        deadline = time.monotonic() + 600
        while self.high_watermark(k) < n and time.monotonic() < deadline:
            time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        p.wait(120)
        return k, stats.stop()

    def topic_bytes(self, k: KafkaSettings) -> int:
        """What the topic's partitions take on the local broker's disk."""
        return sum(du(d) for d in (self.state_dir / "kafka").glob(f"node-*/data/{k.topic}-*"))

    def drain(
        self,
        k: KafkaSettings,
        dsn: str,
        consumers: int,
        expect: int,
        count: Callable[[psycopg.Connection[tuple[Any, ...]]], int],
        group: str | None = None,
        **env: str,
    ) -> res.Drain:
        group = group or f"bench-{uuid.uuid4().hex[:8]}"
        procs = [
            self.spawn(["consumer"], self.env(k, dsn, SENSORPIPE_CONSUMER_GROUP_ID=group, **env))
            for _ in range(consumers)
        ]
        stats = [ProcStats(p.pid).start() for p in procs]
        first_t: float | None = None
        with bq.progress(dsn) as conn:
            start_n = count(conn)
            t_start = time.monotonic()
            deadline = t_start + 900
            n = start_n
            while time.monotonic() < deadline:
                n = count(conn)
                if first_t is None and n > start_n:
                    first_t = time.monotonic()
                if n - start_n >= expect:
                    break
                time.sleep(0.1)
        t_end = time.monotonic()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        costs = [s.stop() for s in stats]
        done = n - start_n
        elapsed = t_end - (first_t or t_start)
        return res.Drain(
            consumers=consumers,
            events=done,
            seconds=round(elapsed, 2),
            events_per_s=round(done / elapsed) if elapsed > 0 else None,
            peak_rss_mb=max(c.peak_rss_mb for c in costs),
            cpu_s=round(sum(c.cpu_s for c in costs), 1),
        )

    def consumer(self) -> res.ConsumerResult:
        n = 200_000 if self.quick else 1_000_000
        k, _producer = self.preload(n)
        dsn = self.database("cons1")
        self.log("consumer: 1 process, dedupe and rollups on")
        one = self.drain(k, dsn, 1, n, bq.stored)
        self.log("consumer: pure-duplicate replay (a new group re-reads everything)")
        replay = self.drain(k, dsn, 1, n, bq.replayed)
        self.log("consumer: the same replay with the position path off (every copy decoded, found by event id)")
        by_id = self.drain(k, dsn, 1, n, bq.replayed, SENSORPIPE_CONSUMER_REPLAY_BY_POSITION="false")
        more = []
        for c in (2, 3):
            self.log(f"consumer: {c} processes")
            more.append(self.drain(k, self.database(f"cons{c}"), c, n, bq.stored))
        self.log("consumer: reference ceiling, a plain binary COPY of the same rows")
        rows = bq.rows_of(dsn)
        dsn_copy = self.database("copy")
        t0 = time.perf_counter()
        bq.copy_rows(dsn_copy, rows)
        copy_s = time.perf_counter() - t0
        copy = res.Rate(events=len(rows), seconds=round(copy_s, 2), events_per_s=round(len(rows) / copy_s))
        self.log("consumer: reference floor, a naive consumer with one transaction per event (20 s)")
        naive = naive_consume(k, self.database("naive"), seconds=10 if self.quick else 20)
        self.log("consumer: profiling one consumer in-process (pyinstrument, 15 s)")
        profile = profile_consumer(k, self.database("prof"), seconds=8 if self.quick else 15)
        rate = one.events_per_s or 0
        return res.ConsumerResult(
            events=n,
            one=one,
            replay=replay,
            replay_by_id=by_id,
            x2=more[0],
            x3=more[1],
            copy=copy,
            naive=naive,
            profile=profile,
            ratio_to_copy=round(rate / copy.events_per_s, 2),
            ratio_to_naive=round(rate / naive.events_per_s, 1),
        )

    # -- 3. end to end -------------------------------------------------------------------------
    def run_rate(self, rate: int, seconds: float) -> res.RateRun:
        k = self.topic(f"e2e{rate}")
        dsn = self.database(f"e2e{rate}")
        group = f"bench-e2e-{uuid.uuid4().hex[:6]}"
        cons = self.spawn(["consumer"], self.env(k, dsn, SENSORPIPE_CONSUMER_GROUP_ID=group))
        time.sleep(3)
        prod = self.spawn(
            ["producer", "--rate", str(rate), "--sensors", "2000", "--duration", str(seconds)], self.env(k)
        )
        stats = {"producer": ProcStats(prod.pid).start(), "consumer": ProcStats(cons.pid).start()}
        for name, pid in platform_pids(self.state_dir).items():
            stats[name] = ProcStats(pid, children=name == "postgres").start()
        # Two series, sampled once a second. Committed lag: the high watermark minus the
        # group's committed offsets. Backlog: produced minus stored (queryable) events. The
        # consumer's offsets reach the broker by auto-commit once a second, so committed lag
        # is a 1-second sawtooth, and sampling it once a second aliases into a slow ramp that
        # says nothing of the consumer keeping up. Steadiness is judged on the backlog.
        lags: list[tuple[float, int]] = []
        backlog: list[tuple[float, int]] = []
        t0 = time.monotonic()
        conn = bq.progress(dsn)

        def sample(hw: int) -> None:
            t = round(time.monotonic() - t0, 1)
            lags.append((t, consumer_lag(k, group, hw)))
            backlog.append((t, max(0, hw - bq.stored(conn))))

        with conn:
            while prod.poll() is None:
                sample(self.high_watermark(k))
                time.sleep(1.0)
            end = time.monotonic()
            hw = self.high_watermark(k)
            drain_deadline = end + 120
            while bq.stored(conn) < hw and time.monotonic() < drain_deadline:
                sample(hw)
                time.sleep(1.0)
            drained = bq.stored(conn) >= hw
        cons.send_signal(signal.SIGTERM)
        cons.wait(60)
        during = [lag for t, lag in lags if t <= seconds]
        return res.RateRun(
            rate=rate,
            seconds=seconds,
            produced=hw,
            drained=drained,
            max_lag=max((lag for _, lag in lags), default=0),
            max_backlog=max((n for _, n in backlog), default=0),
            lag_end_of_load=during[-1] if during else None,
            lag_steady=lag_steady(backlog, rate, seconds),
            latency_ms=msgspec.convert(bq.latency(dsn), res.Latency),
            resources={name: s.stop() for name, s in stats.items()},
            lag_series=lags,
            backlog_series=backlog,
        )

    def e2e(self) -> res.E2EResult:
        seconds = 20.0 if self.quick else 60.0
        out = res.E2EResult(rates=[], max_sustainable=0)
        # An unmeasured run first: a broker that has just started compiles its hot paths, and
        # the first measured rate would pay for it in CPU and latency.
        self.log("e2e: warm-up at 5,000 events/s for 15 s, not measured")
        self.run_rate(5000, 15.0)
        for rate in (5000, 10000, 20000):
            self.log(f"e2e: {rate:,} events/s for {seconds:.0f}s")
            out.rates.append(self.run_rate(rate, seconds))
        probe_s = 15.0 if self.quick else 30.0
        lo, hi = 20000, 60000
        steady = [x.rate for x in out.rates if x.lag_steady]
        best = max(steady, default=0)
        if best == 20000:
            for _ in range(3):
                mid = (lo + hi) // 2 // 1000 * 1000
                self.log(f"e2e: probing {mid:,} events/s for {probe_s:.0f}s")
                r = self.run_rate(mid, probe_s)
                out.probes.append(
                    res.Probe(
                        rate=r.rate,
                        max_lag=r.max_lag,
                        max_backlog=r.max_backlog,
                        lag_steady=r.lag_steady,
                        drained=r.drained,
                    )
                )
                if r.lag_steady:
                    best, lo = mid, mid
                else:
                    hi = mid
        out.max_sustainable = best
        out.floor = transport_floor(self, 200_000 if self.quick else 1_000_000)
        return out

    # -- 7. soak (not part of `all`) ----------------------------------------------------------
    def soak(self) -> res.SoakResult:
        from sensorpipe.proof.soak import Soak, SoakPlan

        minutes, rate = self.soak_plan
        return Soak(self, SoakPlan(minutes=minutes, rate=rate)).run()

    # -- 4. api --------------------------------------------------------------------------------
    def api(self) -> res.ApiResult:
        from sensorpipe.proof.api_stage import api_stage

        return api_stage(self)

    # -- 5. storage ----------------------------------------------------------------------------
    def storage(self) -> res.StorageResult:
        from sensorpipe.proof.storage_stage import storage_stage

        return storage_stage(self)

    # -- 6. the peer: Kafka Connect with the Debezium JDBC sink -------------------------------
    def peer(self) -> res.PeerResult:
        from sensorpipe.proof.peer_stage import peer_stage

        return peer_stage(self)

    def run(self, stages: list[str]) -> res.BenchResults:
        self.out.mkdir(parents=True, exist_ok=True)
        # Stages not run now keep their figures from the last run, each with its own time.
        self.results = res.load(self.out / "bench.json", self.log)
        here = machine()
        self.results.machine, self.results.quick = here, self.quick
        for stage in stages:
            t0 = time.monotonic()
            try:
                result: res.Stage = getattr(self, stage)()
            finally:
                self.drop_topics()
            result.stage_seconds = round(time.monotonic() - t0, 1)
            result.measured_at = datetime.now(UTC).isoformat(timespec="seconds")
            result.machine = here
            setattr(self.results, stage, result)
            res.save(self.results, self.out / "bench.json")
        return self.results
