"""`sensorpipe demo normal|slowdown|duplicates`: the seed's three scenarios, each proving itself.

Each run uses the running stack (or starts one without a producer, and stops it after),
drives its own producer with a ledger, samples the pipeline every second, then waits for
the backlog to drain and audits the result against the ledger. The verdict, a JSON report
and a PNG chart are written; the exit status is non-zero on any violation.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.proof.audit import AuditReport, audit
from sensorpipe.runtime.pipeline import PipelineMonitor, Sample
from sensorpipe.runtime.procs import PlatformError, RunDir
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import audit as audit_q
from sensorpipe.storage import config_store

Log = Callable[[str], None]


class Scenario(enum.StrEnum):
    normal = "normal"
    slowdown = "slowdown"
    duplicates = "duplicates"


@dataclass
class Point:
    t: float
    produced_per_s: float
    stored_per_s: float
    lag: int
    stored: int
    duplicates: int
    slowed: bool


@dataclass
class DemoResult:
    scenario: str
    started_at: str
    duration_s: float
    rate: float
    sensors: int
    acked: int = 0
    stored: int = 0
    duplicates_sent: int = 0
    duplicates_ignored: int = 0
    dlq: int = 0
    lost: int = 0
    duplicate_rows: int = 0
    order_violations: int = 0
    max_lag: int = 0
    drain_seconds: float | None = None
    violations: list[str] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)


def parse_duration(text: str) -> float:
    """'60', '60s', '2m' -> seconds."""
    t = text.strip().lower()
    mult = 60.0 if t.endswith("m") else 1.0
    t = t.rstrip("sm")
    try:
        value = float(t) * mult
    except ValueError as e:
        raise PlatformError(f"--duration {text!r}: use seconds like 60 or 60s, or minutes like 2m") from e
    if not 5 <= value <= 3600:
        raise PlatformError("--duration must be between 5s and 60m")
    return value


class Stack:
    """The running stack, or one started for the demo (without a producer) and stopped after."""

    def __init__(self, state_dir: Path, log: Log) -> None:
        self.state_dir = state_dir
        self.log = log
        self.started = False

    def ensure(self, up_flags: tuple[str, ...] = ("--no-producer",)) -> None:
        sup = RunDir(self.state_dir).read("supervisor")
        if sup is not None and sup.alive():
            self.log(f"using the running stack (supervisor pid {sup.pid})")
            needs_consumer = "--consumers" not in up_flags
            has_consumer = any(r.name.startswith("consumer-") and r.alive() for r in RunDir(self.state_dir).all())
            if needs_consumer and not has_consumer:
                raise PlatformError("the running stack has no consumer: restart it with `sensorpipe up --consumers 1`")
            return
        self.log(f"no stack is running: starting one ({' '.join(up_flags)})")
        out = subprocess.run(
            [sys.executable, "-m", "sensorpipe", "up", "--detach", *up_flags],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise PlatformError(f"could not start the stack: {out.stderr.strip()[-500:]}")
        self.started = True

    def stack_producer_running(self) -> bool:
        rec = RunDir(self.state_dir).read("producer")
        return rec is not None and rec.alive()

    def stop(self) -> None:
        if self.started:
            self.log("stopping the stack started for this command")
            subprocess.run([sys.executable, "-m", "sensorpipe", "down"], capture_output=True, check=False)


def _set_config(dsn: str, update: dict[str, Any], who: str) -> PipelineConfig:
    """Store a new configuration version with `update` applied; returns the one it replaced."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = config_store.latest_or_none(conn)
    config_store.update(dsn, update, who)
    return before.config if before else PipelineConfig()


def _counters(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        s, d, _r, _c = audit_q.counters(conn)
        dead = sum(n for _l, _r2, n in audit_q.dead_letters(conn))
    return s, d, dead


def run_demo(
    scenario: Scenario, duration_s: float, rate: float, sensors: int, state_dir: Path, out_dir: Path, log: Log
) -> DemoResult:
    kafka, db, consumer = KafkaSettings(), DatabaseSettings(), ConsumerSettings()
    stack = Stack(state_dir, log)
    stack.ensure()
    dsn = db.dsn()
    out_dir.mkdir(parents=True, exist_ok=True)
    monitor = PipelineMonitor(
        kafka.client_config(),
        kafka.topic,
        kafka.dlq_topic,
        consumer.group_id,
        lambda: _counters(dsn)[0],
        interval_s=1.0,
    )
    run = DemoRun(scenario, DemoResult(scenario.value, datetime.now(UTC).isoformat(), duration_s, rate, sensors))
    run.ledger = out_dir / f"ledger-{scenario.value}-{int(time.time())}.csv"
    restore: PipelineConfig | None = None
    try:
        # Any producer that follows the configuration store (the one `up` or compose runs) is
        # paused, so the audit sees only this demo's events; its configuration is restored after.
        restore = _set_config(dsn, {"rate": 0}, WHO)
        if stack.stack_producer_running():
            log("paused the stack's own producer (rate 0 in the configuration store)")
        time.sleep(4)  # a producer polls the store every 3 s
        _set_config(dsn, FULL_SPEED, WHO)
        monitor.start()
        _wait_for_empty_backlog(monitor, log)
        run.base = _counters(dsn)
        run.since = datetime.now(UTC)
        with open(out_dir / f"producer-{scenario.value}.log", "ab") as producer_log:
            producer = _start_producer(run, producer_log)
            run.watch(dsn, monitor, producer, log)
            producer.wait(timeout=60)
        if producer.returncode not in (0, None):
            run.result.violations.append(f"the producer exited with status {producer.returncode}")
        time.sleep(2)  # let the last batch's counters land before auditing
        run.judge(dsn, audit(dsn, kafka.bootstrap(), kafka.topic, [run.ledger], since=run.since))
    finally:
        monitor.stop()
        try:
            _set_config(dsn, FULL_SPEED, WHO)
            if restore is not None:
                _set_config(dsn, restore.model_dump(), WHO)
        except psycopg.Error:
            pass
        stack.stop()
    stem = out_dir / f"demo-{scenario.value}"
    stem.with_suffix(".json").write_bytes(orjson.dumps(asdict(run.result), option=orjson.OPT_INDENT_2))
    _chart(run.result, stem.with_suffix(".png"))
    return run.result


WHO = "sensorpipe demo"
FULL_SPEED: dict[str, Any] = {"consumer_slowdown_ms": 0, "consumer_batch_max": None}
SLOWED: dict[str, Any] = {"consumer_slowdown_ms": 2000, "consumer_batch_max": 500}
DRAIN_WAIT_S = 180


@dataclass
class DemoRun:
    """One demo's state while it runs: the ledger, the counters at its start, the slowdown
    knob's schedule, and when the backlog drained."""

    scenario: Scenario
    result: DemoResult
    ledger: Path = Path()
    base: tuple[int, int, int] = (0, 0, 0)  # stored, duplicates, dead letters before the run
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    slowed: bool = False
    knob_off_at: float | None = None
    drained_at: float | None = None

    def watch(self, dsn: str, monitor: PipelineMonitor, producer: subprocess.Popen[bytes], log: Log) -> None:
        """Sample once a second while the producer runs and until the backlog drains."""
        t0 = time.monotonic()
        with Live(console=Console(stderr=True), refresh_per_second=2, transient=False) as live:
            while True:
                time.sleep(1.0)
                t = time.monotonic() - t0
                self._knob(dsn, t, log)
                sample = monitor.latest
                point = self._point(dsn, t, sample)
                producing = producer.poll() is None
                live.update(_progress(self.scenario, point, producing))
                if not producing and point.lag == 0 and sample is not None and sample.at > t0:
                    self.drained_at = t
                    return
                if t > self.result.duration_s + DRAIN_WAIT_S:
                    log(f"the backlog did not drain within {DRAIN_WAIT_S} s after the producer stopped")
                    return

    def _knob(self, dsn: str, t: float, log: Log) -> None:
        """The slowdown scenario slows the consumer from 25% to 60% of the duration."""
        if self.scenario is not Scenario.slowdown:
            return
        on, off = self.result.duration_s * 0.25, self.result.duration_s * 0.6
        if not self.slowed and on <= t < off:
            log(f"t={t:.0f}s: slowing the consumer down (2000 ms per batch, at most 500 events)")
            _set_config(dsn, SLOWED, WHO)
            self.slowed = True
        elif self.slowed and t >= off:
            log(f"t={t:.0f}s: consumer back to full speed")
            _set_config(dsn, FULL_SPEED, WHO)
            self.slowed, self.knob_off_at = False, t

    def _point(self, dsn: str, t: float, sample: Sample | None) -> Point:
        stored, dups, _dead = _counters(dsn)
        point = Point(
            round(t, 2),
            round(sample.produced_per_s or 0.0, 1) if sample else 0.0,
            round(sample.stored_per_s or 0.0, 1) if sample else 0.0,
            sample.total_lag if sample else 0,
            stored - self.base[0],
            dups - self.base[1],
            self.slowed,
        )
        self.result.series.append(asdict(point))
        self.result.max_lag = max(self.result.max_lag, point.lag)
        return point

    def judge(self, dsn: str, report: AuditReport) -> None:
        r = self.result
        _stored, dups, dead = _counters(dsn)
        r.acked = report.acked
        r.stored = report.stored_of_acked
        r.duplicates_sent = report.duplicates_sent
        r.duplicates_ignored = dups - self.base[1]
        r.dlq = dead - self.base[2]
        r.lost = report.lost
        r.duplicate_rows = report.duplicate_rows_metrics + report.duplicate_rows_processed
        r.order_violations = report.order_violations
        end_ref = self.knob_off_at if self.scenario is Scenario.slowdown else r.duration_s
        r.drain_seconds = round(self.drained_at - end_ref, 1) if self.drained_at is not None and end_ref else None
        r.audit = report.as_dict()
        r.violations += _verdict(self.scenario, r, report, r.rate)


def _start_producer(run: DemoRun, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    r = run.result
    cmd = [sys.executable, "-m", "sensorpipe", "producer", "--rate", str(r.rate), "--sensors", str(r.sensors)]
    cmd += ["--duration", str(r.duration_s), "--ledger", str(run.ledger)]
    cmd += ["--duplicate-ratio", str(0.1 if run.scenario is Scenario.duplicates else 0.0)]
    env = {**os.environ, "SENSORPIPE_PRODUCER_METRICS_PORT": "0"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file)


def _wait_for_empty_backlog(monitor: PipelineMonitor, log: Log, timeout_s: float = 600.0) -> None:
    """Events produced before the demo must be stored before it starts, or the audit would
    count them as phantoms of this run."""
    deadline = time.monotonic() + timeout_s
    announced = False
    while time.monotonic() < deadline:
        sample = monitor.latest
        if sample is not None and sample.total_lag == 0:
            return
        if sample is not None and not announced:
            log(f"waiting for the existing backlog ({sample.total_lag:,} messages) to drain first")
            announced = True
        time.sleep(1.0)
    raise PlatformError("the existing backlog did not drain within 10 minutes; is a consumer running?")


def _verdict(scenario: Scenario, r: DemoResult, report: AuditReport, rate: float) -> list[str]:
    v = list(report.anomalies)
    if r.acked == 0:
        v.append("nothing was acknowledged")
    if r.stored != r.acked:
        v.append(f"stored {r.stored} of {r.acked} acknowledged events")
    if r.drain_seconds is None:
        v.append("the backlog did not drain to zero")
    if scenario is Scenario.duplicates:
        if r.duplicates_sent == 0:
            v.append("no duplicates were sent")
        if r.duplicates_ignored != r.duplicates_sent:
            v.append(f"duplicates ignored ({r.duplicates_ignored}) != duplicates sent ({r.duplicates_sent})")
    if scenario is Scenario.slowdown and r.max_lag < max(100, rate):
        v.append(f"lag peaked at only {r.max_lag}: the slowdown did not build a visible backlog")
    return v


def _progress(scenario: Scenario, p: Point, producing: bool) -> Table:
    t = Table(title=f"demo {scenario.value}: {'producing' if producing else 'draining'}", show_edge=False)
    for col in ("t", "produced/s", "stored/s", "lag", "stored", "duplicates ignored", "consumer"):
        t.add_column(col, justify="right")
    t.add_row(
        f"{p.t:.0f}s",
        f"{p.produced_per_s:,.0f}",
        f"{p.stored_per_s:,.0f}",
        f"{p.lag:,}",
        f"{p.stored:,}",
        f"{p.duplicates:,}",
        "SLOWED" if p.slowed else "normal",
    )
    return t


def print_verdict(r: DemoResult, console: Console) -> None:
    t = Table(title=f"demo {r.scenario}: {'PASS' if not r.violations else 'FAIL'}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("must be")
    rows: list[tuple[str, str, str]] = [
        ("acknowledged events", f"{r.acked:,}", ""),
        ("stored", f"{r.stored:,}", "= acknowledged"),
        ("duplicates sent", f"{r.duplicates_sent:,}", ""),
        ("duplicates ignored", f"{r.duplicates_ignored:,}", "= sent"),
        ("dead-lettered", f"{r.dlq:,}", ""),
        ("lost", f"{r.lost:,}", "0"),
        ("duplicate rows", f"{r.duplicate_rows:,}", "0"),
        ("per-sensor order violations", f"{r.order_violations:,}", "0"),
        ("maximum lag (messages)", f"{r.max_lag:,}", ""),
        ("time to drain", f"{r.drain_seconds:.1f}s" if r.drain_seconds is not None else "did not drain", ""),
    ]
    for row in rows:
        t.add_row(*row)
    console.print(t)
    for v in r.violations:
        console.print(f"[red]violation:[/] {v}")


def _chart(r: DemoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not r.series:
        return
    ts = [p["t"] for p in r.series]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(ts, [p["produced_per_s"] for p in r.series], label="produced/s", color="#1f77b4")
    ax.plot(ts, [p["stored_per_s"] for p in r.series], label="stored/s", color="#2ca02c")
    ax.set_xlabel("seconds")
    ax.set_ylabel("events/s")
    ax2 = ax.twinx()
    ax2.plot(ts, [p["lag"] for p in r.series], label="lag (messages)", color="#d62728", linestyle="--")
    ax2.set_ylabel("lag (messages)")
    slowed = [p["t"] for p in r.series if p["slowed"]]
    if slowed:
        ax.axvspan(min(slowed), max(slowed), color="#ff7f0e", alpha=0.15, label="consumer slowed")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.set_title(f"sensorpipe demo {r.scenario}: {r.rate:g} events/s, {r.sensors} sensors")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
