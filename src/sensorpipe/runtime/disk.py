"""The local stack's disk: the plan made from the budget at start, what each component holds
now, and the caps on the logs.

`sensorpipe up` makes the plan once per start (`plan_for`), writes it to the state folder
(`disk-plan.json`, which `status` and the API read) and hands each share to the component
that keeps it: Kafka's topics get `retention.bytes`, PostgreSQL a WAL size, the consumer the
store's share and the folders it must watch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sensorpipe.contracts.disk import LOG_CAP, DiskPlan, Usage, fs_usage, human
from sensorpipe.settings import DiskSettings

# Bytes per event for the projection: the storage stage's figures (BENCHMARKS.md), the Kafka
# log with the producer's lz4.
DEFAULT_BYTES_PER_EVENT = {"kafka": 38, "postgres": 349}


def plan_for(settings: DiskSettings, state_dir: Path, now: Usage) -> DiskPlan:
    return DiskPlan.make(settings.budget, settings.floor, settings.kafka_share, fs_usage(state_dir), now.total)


def projection(plan: DiskPlan, now: Usage, rate: float) -> list[str]:
    """Lines for `sensorpipe up`: the budget, its use, and when each share fills at `rate`."""
    lines = [
        f"disk budget {human(plan.effective)}"
        + (f" (asked {human(plan.requested)}, clamped to what the disk holds above the floor)" if plan.clamped else "")
        + f"; free-space floor {human(plan.floor)}",
        f"  shares: Kafka {human(plan.kafka)}, PostgreSQL {human(plan.postgres)}, logs {human(plan.logs)}",
        f"  in use: Kafka {human(now.kafka)}, PostgreSQL {human(now.postgres)}, logs {human(now.logs)}",
    ]
    if rate <= 0:
        return lines
    for key, name, share, used, after in (
        ("kafka", "Kafka", plan.kafka, now.kafka, "its oldest segments go"),
        ("postgres", "PostgreSQL", plan.postgres, now.postgres, "the oldest raw days go"),
    ):
        hours = max(0, share - used) / (rate * DEFAULT_BYTES_PER_EVENT[key]) / 3600
        lines.append(f"  at {rate:,.0f} events/s {name} reaches its share in about {hours:,.1f} h; then {after}")
    pg_day = rate * DEFAULT_BYTES_PER_EVENT["postgres"] * 86_400
    if plan.postgres < 2 * pg_day:
        lines.append(
            f"  note: two days of raw rows at this rate take about {human(2 * pg_day)}, more than PostgreSQL's "
            f"share; when only today's rows are left the consumer pauses and Kafka holds the backlog"
        )
    return lines


def cap_logs(folder: Path, cap: int = LOG_CAP) -> list[Path]:
    """Rotate every log in `folder` over `cap` bytes: copy it to NAME.1 (replacing the last
    one) and truncate it in place. The writers opened their logs for appending, so they go
    on writing at the new end. Kafka's own rolling logs (kafka-N.log, and kafka-N-gc.log) are
    left to log4j and the JVM, which rotate them themselves."""
    rotated = []
    for f in sorted(folder.glob("*.log")) + sorted(folder.glob("*.out")):
        if f.name.startswith("kafka-") and f.suffix == ".log":
            continue
        try:
            if f.stat().st_size <= cap:
                continue
            shutil.copyfile(f, f.with_name(f.name + ".1"))
            os.truncate(f, 0)
        except FileNotFoundError:
            continue
        rotated.append(f)
    return rotated
