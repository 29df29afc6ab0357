"""The disk budget: how one budget splits between the local Kafka log, PostgreSQL and the
logs, and how the free-space floor is judged.

Contract:
- the budget is a size (``50GB``) or a share of the state folder's filesystem (``40%``); it is
  never more than what that filesystem can hold above the floor (``effective``);
- Kafka's share bounds each local topic partition by ``retention.bytes`` plus one segment
  (`KafkaLimits`), so the log can never outgrow it;
- PostgreSQL's share is kept by size retention in the consumer (oldest raw days first);
  when nothing more can be dropped, or the filesystem's free space is under the floor, the
  consumer pauses: the backlog stays in Kafka and nothing is lost;
- logs are capped by the supervisor (`LOG_CAP`).

Everything here is pure arithmetic on numbers the caller measured, so it can be unit-tested
without a disk; `du` and `fs_usage` are the only probes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": GiB,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": TiB,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")

# The default floor: the larger of this share of the filesystem and this size.
FLOOR_SHARE = 0.05
FLOOR_MIN = 2 * GiB
# What the logs may take (each log file is rotated at LOG_CAP, keeping one previous file).
LOG_CAP = 32 * MiB
# The main topic's part of Kafka's share; the rest is the dead-letter topic's.
MAIN_TOPIC_SHARE = 0.9
# Kafka refuses smaller segments; larger ones make retention.bytes coarse.
SEGMENT_MIN, SEGMENT_MAX = 1 * MiB, 256 * MiB


class SizeError(ValueError):
    """A size or share that cannot be read."""


def parse_size(text: str) -> int:
    """``50GB``, ``512MiB``, ``1.5T`` or a plain byte count -> bytes (decimal or binary units)."""
    m = _SIZE.match(text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise SizeError(f"{text!r} is not a size: use e.g. 50GB, 512MiB or 40%")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_amount(text: str, whole: int) -> int:
    """A size, or a share (``40%``) of `whole` bytes."""
    m = _SHARE.match(text)
    if m is None:
        return parse_size(text)
    share = float(m.group(1))
    if not 0 < share <= 100:
        raise SizeError(f"{text!r}: a share must be above 0% and at most 100%")
    return int(whole * share / 100)


def human(n: float) -> str:
    """Bytes as a short binary-unit text: 1.5 GiB, 320 MiB, 12 KiB."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class FsUsage:
    total: int
    free: int  # available to an unprivileged writer (statvfs f_bavail)


def fs_usage(path: Path) -> FsUsage:
    """The filesystem holding `path` (its nearest existing parent)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    u = shutil.disk_usage(p)
    return FsUsage(total=u.total, free=u.free)


def du(path: Path) -> int:
    """Bytes allocated on disk under `path` (files' blocks; 0 when it does not exist). Files
    that vanish while it walks (a rolled segment, a recycled WAL file) are skipped."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                else:
                    total += st.st_blocks * 512
    return total


def floor_bytes(text: str | None, fs_total: int) -> int:
    """The free-space floor: the given size or share, else the larger of 5% and 2 GiB."""
    if text is None or text.strip().lower() in ("", "auto"):
        return max(int(fs_total * FLOOR_SHARE), FLOOR_MIN)
    return parse_amount(text, fs_total)


@dataclass(frozen=True)
class KafkaLimits:
    """Per-partition topic settings that keep a topic inside its share: a partition holds at
    most `retention_bytes` in closed segments plus one active segment."""

    retention_bytes: int
    segment_bytes: int

    @classmethod
    def for_share(cls, share: int, partitions: int, replication: int) -> KafkaLimits:
        per_partition = max(share // max(1, partitions * replication), 2 * SEGMENT_MIN)
        segment = min(max(per_partition // 5, SEGMENT_MIN), SEGMENT_MAX)
        return cls(retention_bytes=max(per_partition - segment, segment), segment_bytes=segment)

    def topic_config(self) -> dict[str, str]:
        return {"retention.bytes": str(self.retention_bytes), "segment.bytes": str(self.segment_bytes)}


def topic_limits(share: int, partitions: int, replication: int) -> tuple[KafkaLimits, KafkaLimits]:
    """(main topic, dead-letter topic) limits that keep both inside `share` bytes; both topics
    have `partitions` partitions."""
    main = int(share * MAIN_TOPIC_SHARE)
    return (
        KafkaLimits.for_share(main, partitions, replication),
        KafkaLimits.for_share(share - main, partitions, replication),
    )


@dataclass(frozen=True)
class DiskPlan:
    """One budget, split. All figures in bytes."""

    requested: int  # what the setting asked for
    effective: int  # what is planned: never more than the filesystem holds above the floor
    floor: int
    kafka: int
    postgres: int
    logs: int

    @property
    def clamped(self) -> bool:
        return self.effective < self.requested

    @classmethod
    def make(
        cls, budget: str, floor: str | None, kafka_share: float, fs: FsUsage, used_now: int, log_files: int = 8
    ) -> DiskPlan:
        """`used_now`: what the stack already holds on that filesystem (it counts as room:
        the budget covers it). `log_files`: how many rotated logs the stack writes."""
        requested = parse_amount(budget, fs.total)
        floor_b = floor_bytes(floor, fs.total)
        effective = max(0, min(requested, used_now + fs.free - floor_b))
        logs = min(effective // 20, log_files * 2 * LOG_CAP)
        kafka = int((effective - logs) * kafka_share)
        return cls(requested, effective, floor_b, kafka, effective - logs - kafka, logs)

    def kafka_limits(self, partitions: int, replication: int) -> tuple[KafkaLimits, KafkaLimits]:
        return topic_limits(self.kafka, partitions, replication)

    def postgres_wal(self) -> int:
        """max_wal_size for the local cluster: a tenth of PostgreSQL's share, 64 MiB to 4 GiB."""
        return min(max(self.postgres // 10, 64 * MiB), 4 * GiB)

    def postgres_data(self) -> int:
        """What the store's tables may take: PostgreSQL's share less its WAL (which may pass
        max_wal_size under load; the free-space floor covers that)."""
        return max(0, self.postgres - self.postgres_wal())


PLAN_FILE = "disk-plan.json"


@dataclass(frozen=True)
class Usage:
    """Bytes on disk now, by component."""

    kafka: int
    postgres: int
    logs: int

    @property
    def total(self) -> int:
        return self.kafka + self.postgres + self.logs


def usage(state_dir: Path, pg_data: Path | None) -> Usage:
    """What each component holds under the state folder; PostgreSQL's data may lie outside it."""
    pg = 0 if pg_data is None else du(state_dir / "postgres" if pg_data.is_relative_to(state_dir) else pg_data)
    return Usage(kafka=du(state_dir / "kafka"), postgres=pg, logs=du(state_dir / "logs"))


class Planned(NamedTuple):
    """The plan file: the plan, the folders the consumer watches, and PostgreSQL's data folder
    when the cluster is local."""

    plan: DiskPlan
    watch: list[Path]
    pg_data: Path | None


def write_plan(state_dir: Path, plan: DiskPlan, watch: list[Path], pg_data: Path | None = None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    doc = {**asdict(plan), "watch": [str(p) for p in watch], "pg_data": None if pg_data is None else str(pg_data)}
    tmp = state_dir / (PLAN_FILE + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    tmp.replace(state_dir / PLAN_FILE)


def read_plan(state_dir: Path) -> Planned | None:
    """The plan the running (or last) stack was started with, if any."""
    try:
        doc: dict[str, Any] = orjson.loads((state_dir / PLAN_FILE).read_bytes())
        watch = [Path(p) for p in doc.pop("watch", [])]
        pg_data = doc.pop("pg_data", None)
        return Planned(DiskPlan(**doc), watch, None if pg_data is None else Path(pg_data))
    except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
        return None


@dataclass(frozen=True)
class FloorCheck:
    least_free: int | None  # over the watched filesystems; None when none is watched
    low: list[tuple[Path, int, int]]  # (folder, free, floor) of each filesystem under its floor


def check_floor(watch: list[Path], floor: str | None, probe: Callable[[Path], FsUsage] = fs_usage) -> FloorCheck:
    """Free space against the floor (`floor_bytes` of each filesystem's size) on every watched
    folder's filesystem; the consumer's guard, the API and `status` judge it the same way.
    Raises OSError when a filesystem cannot be read."""
    least: int | None = None
    low = []
    for path in watch:
        u = probe(path)
        limit = floor_bytes(floor, u.total)
        least = u.free if least is None else min(least, u.free)
        if u.free < limit:
            low.append((path, u.free, limit))
    return FloorCheck(least, low)
