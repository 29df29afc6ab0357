"""The `sensorpipe` command. Entry points stay thin: parse flags, build settings, hand on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from sensorpipe.runtime.procs import PlatformError, RunDir
from sensorpipe.settings import DatabaseSettings, KafkaSettings, StateSettings, redact_dsn

app = typer.Typer(
    name="sensorpipe",
    help="Sensor-event ingestion pipeline: producer -> Kafka -> consumer -> PostgreSQL -> API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _say(msg: str) -> None:
    Console(stderr=True).print(f"[bold cyan]sensorpipe[/] {msg}", highlight=False)


def _state_dir() -> Path:
    return StateSettings().resolved()


@app.command()
def up(
    brokers: Annotated[
        int | None, typer.Option(min=1, max=5, help="Local Kafka nodes (3 for replication tests).")
    ] = None,
    consumers: Annotated[int, typer.Option(min=0, max=12, help="Consumer processes to run.")] = 1,
    no_producer: Annotated[bool, typer.Option("--no-producer", help="Start everything but the producer.")] = False,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not start the API and dashboard.")] = False,
    rate: Annotated[
        float | None, typer.Option(min=0.0, help="Producer events/s; stored as a new configuration version.")
    ] = None,
    sensors: Annotated[int | None, typer.Option(min=1, max=100_000, help="Simulated sensors; stored likewise.")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return when ready.")] = False,
) -> None:
    """Start Kafka, PostgreSQL and the pipeline components, and supervise them."""
    from sensorpipe.runtime.wiring import build_stack

    state_dir = _state_dir()
    run = RunDir(state_dir)
    sup = run.read("supervisor")
    if sup is not None and sup.alive():
        raise PlatformError(
            f"a stack is already running from {state_dir} (supervisor pid {sup.pid}); "
            f"see `sensorpipe status`, or stop it with `sensorpipe down`"
        )
    if detach:
        argv = [a for a in sys.argv[1:] if a != "--detach"]
        log_path = state_dir / "logs" / "supervisor.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sensorpipe", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        marker = state_dir / "run" / "ready"
        while proc.poll() is None and not marker.exists():
            time.sleep(0.2)
        if proc.poll() is not None:
            raise PlatformError(f"the stack failed to start (exit {proc.returncode}); see {log_path}")
        _say(f"running in the background (pid {proc.pid}); logs in {log_path}")
        _print_addresses(state_dir)
        return

    kafka = KafkaSettings()
    if brokers:
        kafka = kafka.model_copy(update={"brokers": brokers})
    supervisor = build_stack(
        kafka=kafka,
        db=DatabaseSettings(),
        state_dir=state_dir,
        consumers=consumers,
        producer=not no_producer,
        api=not no_api,
        rate=rate,
        sensors=sensors,
        log=_say,
    )

    def ready() -> None:
        (state_dir / "run" / "ready").write_text(str(os.getpid()))
        _print_addresses(state_dir)
        _say("ready; Ctrl-C stops everything")

    try:
        code = supervisor.run(on_ready=ready)
    finally:
        (state_dir / "run" / "ready").unlink(missing_ok=True)
    raise typer.Exit(code)


def _print_addresses(state_dir: Path) -> None:
    recs = {r.name: r for r in RunDir(state_dir).all()}
    kafka = KafkaSettings()
    db = DatabaseSettings()
    table = Table(show_header=False, box=None)
    if "api" in recs and recs["api"].address:
        table.add_row("dashboard", f"{recs['api'].address}/")
        table.add_row("API", f"{recs['api'].address}/docs")
    kafka_addr = ",".join(r.address or "" for n, r in sorted(recs.items()) if n.startswith("kafka"))
    table.add_row("Kafka", kafka_addr or kafka.bootstrap())
    table.add_row(
        "PostgreSQL",
        redact_dsn(recs["postgres"].address) if "postgres" in recs and recs["postgres"].address else db.shown(),
    )
    table.add_row("logs", str(state_dir / "logs"))
    Console(stderr=True).print(table)


@app.command()
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete Kafka logs and PostgreSQL data.")] = False,
) -> None:
    """Stop the running stack. State survives unless --purge is given."""
    from sensorpipe.runtime.supervisor import down as do_down

    do_down(_state_dir(), purge, _say)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show what is running, with pids and addresses."""
    state_dir = _state_dir()
    components = {}
    for rec in RunDir(state_dir).all():
        if rec.name == "supervisor":
            continue
        components[rec.name] = {
            "state": "running" if rec.alive() else "stale",
            "pid": rec.pid,
            "address": rec.address,
        }
    disk = _disk_status(state_dir)
    if json_out:
        doc = {"components": components, "disk": disk}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not components:
        _say(f"nothing is running from {state_dir}")
    else:
        table = Table("component", "state", "pid", "address")
        for name, c in components.items():
            table.add_row(name, str(c["state"]), str(c["pid"]), str(c["address"] or ""))
        Console().print(table)
    if disk is not None:
        _print_disk(disk)


def _disk_status(state_dir: Path) -> dict[str, Any] | None:
    """The disk plan the stack was started with, each component's use now, and free space
    against the floor, judged as the consumer's guard does."""
    from sensorpipe.contracts import disk
    from sensorpipe.settings import DiskSettings

    planned = disk.read_plan(state_dir)
    if planned is None:
        return None
    plan, watch, pg_data = planned
    used = disk.usage(state_dir, pg_data)
    check = disk.check_floor(watch, DiskSettings().floor)
    return {
        "budget_bytes": plan.effective,
        "floor_bytes": plan.floor,
        "free_bytes": check.least_free,
        "under_floor": [str(path) for path, _free, _floor in check.low],
        "components": {
            "kafka": {"used_bytes": used.kafka, "share_bytes": plan.kafka},
            "postgres": {"used_bytes": used.postgres, "share_bytes": plan.postgres},
            "logs": {"used_bytes": used.logs, "share_bytes": plan.logs},
        },
    }


def _print_disk(d: dict[str, Any]) -> None:
    from sensorpipe.contracts.disk import human

    table = Table("disk", "used", "share", title=f"disk budget {human(d['budget_bytes'])}")
    for name, c in d["components"].items():
        table.add_row(name, human(c["used_bytes"]), human(c["share_bytes"]))
    Console().print(table)
    free = d["free_bytes"]
    if free is not None:
        note = f" (under it on {', '.join(d['under_floor'])}: consumption paused)" if d["under_floor"] else ""
        _say(f"free space {human(free)}, floor {human(d['floor_bytes'])}{note}")


@app.command()
def init(
    rate: Annotated[float | None, typer.Option(min=0, help="Seed the configuration store with this rate.")] = None,
    sensors: Annotated[int | None, typer.Option(min=1, max=100_000, help="...and this sensor count.")] = None,
) -> None:
    """Apply migrations and create the topics on existing services (compose, cloud); idempotent."""
    from sensorpipe.contracts.config import PipelineConfig
    from sensorpipe.runtime.bootstrap import ensure_topics
    from sensorpipe.storage import config_store
    from sensorpipe.storage.migrate import migrate

    db = DatabaseSettings()
    applied = migrate(db.dsn())
    _say(f"migrations applied now: {applied or 'none (up to date)'}")
    kafka = KafkaSettings()
    ensure_topics(kafka)
    _say(f"topics {kafka.topic} ({kafka.partitions} partitions) and {kafka.dlq_topic} are in place")
    if rate is not None or sensors is not None:
        cfg = PipelineConfig(**{k: v for k, v in {"rate": rate, "sensors": sensors}.items() if v is not None})
        if config_store.seed_if_empty(db.dsn(), cfg) is not None:
            _say("stored the initial producer configuration")


@app.command()
def consumer(
    batch_max: Annotated[int | None, typer.Option(min=1, max=100_000, help="Events per transaction.")] = None,
    batch_wait_ms: Annotated[int | None, typer.Option(min=1, max=60_000, help="Longest wait to fill a batch.")] = None,
    slowdown_ms: Annotated[int | None, typer.Option(min=0, max=60_000, help="Artificial DB latency per batch.")] = None,
    metrics_port: Annotated[int | None, typer.Option(min=0, max=65535, help="Prometheus port; 0 disables.")] = None,
) -> None:
    """Consume sensor_metrics into PostgreSQL: idempotent batches, offsets after commit, DLQ."""
    from sensorpipe.consumer.main import run_consumer
    from sensorpipe.settings import ClockSettings, ConsumerSettings, DiskSettings

    flags = {
        "batch_max": batch_max,
        "batch_wait_ms": batch_wait_ms,
        "slowdown_ms": slowdown_ms,
        "metrics_port": metrics_port,
    }
    settings = ConsumerSettings.model_validate({k: v for k, v in flags.items() if v is not None})
    run_consumer(settings, KafkaSettings(), DatabaseSettings(), DiskSettings(), ClockSettings())


@app.command()
def compactor(
    grace_days: Annotated[int | None, typer.Option(min=1, max=30, help="Days before today kept as rows.")] = None,
    interval_s: Annotated[float | None, typer.Option(min=0.1, max=86_400, help="Pause between passes.")] = None,
    metrics_port: Annotated[int | None, typer.Option(min=0, max=65535, help="Prometheus port; 0 disables.")] = None,
) -> None:
    """Compact closed days of raw rows into compressed chunks, in the background."""
    from sensorpipe.compactor.main import run_compactor
    from sensorpipe.settings import ClockSettings, CompactorSettings

    flags = {"grace_days": grace_days, "interval_s": interval_s, "metrics_port": metrics_port}
    settings = CompactorSettings.model_validate({k: v for k, v in flags.items() if v is not None})
    run_compactor(settings, DatabaseSettings(), ClockSettings())


@app.command()
def producer(
    rate: Annotated[float | None, typer.Option(min=0, max=1_000_000, help="Target events/s.")] = None,
    sensors: Annotated[int | None, typer.Option(min=1, max=100_000, help="Simulated sensors.")] = None,
    duplicate_ratio: Annotated[float | None, typer.Option(min=0, max=1, help="Share re-sent as-is.")] = None,
    poison_ratio: Annotated[float | None, typer.Option(min=0, max=1, help="Share of poison messages.")] = None,
    burst_multiplier: Annotated[float | None, typer.Option(min=1, max=100, help="Rate factor in a burst.")] = None,
    burst_every: Annotated[float | None, typer.Option(min=0, help="Seconds between bursts.")] = None,
    burst_duration: Annotated[float | None, typer.Option(min=0, help="Seconds per burst.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Processes, each a shard of sensors.")] = None,
    ledger: Annotated[Path | None, typer.Option(help="Record every delivery report here.")] = None,
    api_url: Annotated[str | None, typer.Option(help="Poll this API for the live configuration.")] = None,
    metrics_port: Annotated[int | None, typer.Option(min=0, max=65535, help="Prometheus port; 0 disables.")] = None,
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
    shard: Annotated[int | None, typer.Option(hidden=True, min=0)] = None,
) -> None:
    """Simulate sensors and produce their events to sensor_metrics."""
    from sensorpipe.producer.main import run_producer
    from sensorpipe.settings import ProducerSettings

    flags = {
        "rate": rate,
        "sensors": sensors,
        "duplicate_ratio": duplicate_ratio,
        "poison_ratio": poison_ratio,
        "burst_multiplier": burst_multiplier,
        "burst_every_s": burst_every,
        "burst_duration_s": burst_duration,
        "workers": workers,
        "api_url": api_url,
        "metrics_port": metrics_port,
    }
    settings = ProducerSettings.model_validate({k: v for k, v in flags.items() if v is not None})
    argv = [a for a in sys.argv[2:]]
    code = run_producer(settings, KafkaSettings(), _state_dir(), ledger, duration, shard, argv)
    raise typer.Exit(code)


@app.command()
def openapi() -> None:
    """Print the API's OpenAPI schema (the dashboard's types are generated from it)."""
    from sensorpipe.api.app import ApiConfig, create_app

    cfg = ApiConfig(
        dsn="postgresql://unused",
        bootstrap="127.0.0.1:1",
        topic="t",
        dlq_topic="t.dlq",
        group="g",
        admin_token=None,
        statement_timeout_ms=1000,
        cors_origins=[],
        dashboard_dir=None,
    )
    sys.stdout.write(
        orjson.dumps(create_app(cfg).openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    )


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Listen address (beyond loopback needs a token).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Listen port.")] = None,
) -> None:
    """Serve the read-only API and the dashboard."""
    from sensorpipe.api.main import run_api
    from sensorpipe.settings import AdminSettings, ApiSettings, ConsumerSettings

    flags = {"host": host, "port": port}
    settings = ApiSettings.model_validate({k: v for k, v in flags.items() if v is not None})
    run_api(settings, DatabaseSettings(), KafkaSettings(), AdminSettings(), ConsumerSettings())


@app.command()
def demo(
    scenario: Annotated[str, typer.Argument(help="normal, slowdown or duplicates")],
    duration: Annotated[str, typer.Option(help="How long to produce: 60, 60s or 2m.")] = "60s",
    rate: Annotated[float, typer.Option(min=1, max=1_000_000, help="Producer events/s.")] = 5000.0,
    sensors: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated sensors.")] = 2000,
    out: Annotated[Path, typer.Option(help="Where the report, chart and ledger go.")] = Path("artifacts/demo"),
) -> None:
    """Run a demo scenario on the local stack and prove it: lost 0, duplicate rows 0, order kept."""
    from sensorpipe.proof.demo import Scenario, parse_duration, print_verdict, run_demo

    try:
        chosen = Scenario(scenario)
    except ValueError as e:
        raise typer.BadParameter(f"unknown scenario {scenario!r}: choose normal, slowdown or duplicates") from e
    result = run_demo(chosen, parse_duration(duration), rate, sensors, _state_dir(), out, _say)
    print_verdict(result, Console())
    _say(f"report: {out / f'demo-{chosen.value}.json'}, chart: {out / f'demo-{chosen.value}.png'}")
    raise typer.Exit(1 if result.violations else 0)


@app.command()
def audit(
    ledger: Annotated[list[Path] | None, typer.Option(help="Producer ledger file(s); repeatable.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report here.")] = None,
) -> None:
    """Check the ledger against the topic and the store: lost, phantom, duplicate rows, order."""
    from sensorpipe.proof.audit import audit as run_audit
    from sensorpipe.proof.audit import write_json
    from sensorpipe.proof.demo import Stack

    paths = list(ledger or [])
    for p in paths:
        if not p.is_file():
            raise typer.BadParameter(f"no ledger at {p}", param_hint="--ledger")
    stack = Stack(_state_dir(), _say)
    stack.ensure(("--no-producer", "--no-api", "--consumers", "0"))
    try:
        kafka = KafkaSettings()
        report = run_audit(DatabaseSettings().dsn(), kafka.bootstrap(), kafka.topic, paths)
    finally:
        stack.stop()
    table = Table(title=f"audit: {'PASS' if not report.anomalies else 'FAIL'}")
    table.add_column("check")
    table.add_column("value", justify="right")
    for name, value in [
        ("acknowledged events (ledger)", report.acked),
        ("unknown (timed out in flight)", report.unknown),
        ("stored events", report.stored),
        ("lost", report.lost),
        ("  lost in Kafka", report.lost_in_kafka),
        ("  lost in the consumer", report.lost_in_consumer),
        ("stamped before the raw horizon (dropped by retention)", report.dropped_by_retention),
        ("refused as out of the time window (dead-lettered)", report.refused_out_of_window),
        ("phantom", report.phantom),
        ("duplicate rows in metrics", report.duplicate_rows_metrics),
        ("duplicate rows in processed_events", report.duplicate_rows_processed),
        ("per-sensor order violations", report.order_violations),
        ("poison acknowledged / dead-lettered", f"{report.poison_acked} / {report.poison_dead_lettered}"),
    ]:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    for a in report.anomalies:
        Console(stderr=True).print(f"[red]anomaly:[/] {a}")
    if json_out is not None:
        write_json(report, json_out)
    raise typer.Exit(1 if report.anomalies else 0)


@app.command()
def bench(
    stage: Annotated[
        str,
        typer.Argument(help="producer, consumer, e2e, api, storage, peer, all; soak; or report (render only)"),
    ] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes, for a smoke run.")] = False,
    minutes: Annotated[float, typer.Option(min=1, max=1440, help="soak: how long the load runs.")] = 30,
    rate: Annotated[int, typer.Option(min=100, max=200_000, help="soak: events/s offered.")] = 20_000,
    out: Annotated[Path, typer.Option(help="Raw JSON and charts.")] = Path("artifacts/bench"),
    report: Annotated[Path, typer.Option(help="The Markdown report.")] = Path("BENCHMARKS.md"),
) -> None:
    """Measure every stage against its reference on the local stack; write BENCHMARKS.md."""
    from sensorpipe.proof.bench import STAGES, Bench
    from sensorpipe.proof.demo import Stack
    from sensorpipe.proof.report import charts, render
    from sensorpipe.proof.results import load

    stages = list(STAGES) if stage == "all" else [] if stage == "report" else [stage]
    if any(s not in (*STAGES, "soak") for s in stages):
        raise typer.BadParameter(f"unknown stage {stage!r}: choose {', '.join(STAGES)}, all, soak or report")
    published = report.parent / "docs" / "bench"
    if not (out / "bench.json").is_file() and (published / "bench.json").is_file():
        # stages not run now keep their published figures (a fresh clone has no `out` yet)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(published / "bench.json", out / "bench.json")
    if stages:
        stack = Stack(_state_dir(), _say)
        stack.ensure(("--no-producer", "--no-api", "--consumers", "0"))
        try:
            results = Bench(_state_dir(), out, _say, quick=quick, soak=(minutes, rate)).run(stages)
        finally:
            stack.stop()
    else:  # report: render the recorded figures again
        results = load(out / "bench.json", _say)
    charts(results, out)
    # The raw figures and the chart are published beside the report (the logs stay in `out`).
    published.mkdir(parents=True, exist_ok=True)
    for name in ("bench.json", "e2e.png"):
        if (out / name).is_file():
            shutil.copyfile(out / name, published / name)
    report.write_text(render(results, "`make bench` (all stages), or `sensorpipe bench STAGE` for one"))
    _say(f"wrote {report} and {out / 'bench.json'}")


dlq_app = typer.Typer(
    help="Dead letters: list them, show one with its original message, redrive the ones that now pass.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")

_REASON = typer.Option(help="Only this reason (as `dlq list` shows it).")
_SINCE = typer.Option(help="Only those dead-lettered since: an ISO time, or a span ago (15m, 2h, 7d).")


def _since(text: str | None) -> Any:
    from sensorpipe.dlq.main import parse_since

    try:
        return None if text is None else parse_since(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--since") from e


@dlq_app.command("list")
def dlq_list(
    reason: Annotated[str | None, _REASON] = None,
    since: Annotated[str | None, _SINCE] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 50,
) -> None:
    """List dead letters, newest first, with the count of each reason."""
    from sensorpipe.dlq.main import list_dead

    list_dead(DatabaseSettings(), reason, _since(since), limit)


@dlq_app.command("show")
def dlq_show(
    position: Annotated[str, typer.Argument(help="Source position PARTITION@OFFSET, from `dlq list`.")],
) -> None:
    """Show one dead letter, its reason, and its original key, headers and value."""
    from sensorpipe.dlq.main import parse_position, show_dead

    try:
        where = parse_position(position)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="POSITION") from e
    if not show_dead(DatabaseSettings(), KafkaSettings(), where):
        _say(f"no dead letter at {position}")
        raise typer.Exit(1)


@dlq_app.command("redrive")
def dlq_redrive(
    reason: Annotated[str | None, _REASON] = None,
    since: Annotated[str | None, _SINCE] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Judge them again; produce nothing.")] = False,
) -> None:
    """Judge dead letters again and produce those that now pass back to the main topic."""
    from sensorpipe.dlq.main import redrive_dead
    from sensorpipe.settings import ConsumerSettings

    outcomes = redrive_dead(
        DatabaseSettings(), KafkaSettings(), ConsumerSettings(), reason, _since(since), limit, dry_run
    )
    verdicts: dict[str, int] = {}
    for o in outcomes:
        verdicts[o.verdict] = verdicts.get(o.verdict, 0) + 1
    _say(", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())) or "no dead letter matched")
    raise typer.Exit(1 if verdicts.get("not acknowledged") else 0)


def main() -> None:
    """Run the CLI; usage errors and platform problems each print one clear line."""
    try:
        rc = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as e:
        # Typer's usage errors (bad flags, out-of-range values) carry the offending option
        # in their context; print them as one line instead of a usage box.
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        sys.stderr.write(f"sensorpipe: error: {where}{e.format_message()}\n")
        sys.exit(2 if ctx is not None else e.exit_code)
    except PlatformError as e:
        sys.stderr.write(f"sensorpipe: {e}\n")
        sys.exit(1)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        sys.stderr.write(f"sensorpipe: invalid setting: {errs}\n")
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)
