"""Response models of the API. Names say their role: `XPublic` for one item, `XPage` for a
list of the shape `{data, next_cursor}`. Floats are finite by construction: the store only
holds finite values, and empty aggregates are null, never NaN."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from sensorpipe.contracts.config import PipelineConfig


class ReadingPublic(BaseModel):
    sensor_id: str
    event_id: str
    timestamp: datetime
    value: float
    seq: int


class ReadingsPage(BaseModel):
    data: list[ReadingPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class AggregatePublic(BaseModel):
    sensor_id: str | None = Field(description="Null when no sensor was given: one series over all sensors.")
    bucket: datetime
    count: int
    min: float
    max: float
    avg: float


class AggregatePage(BaseModel):
    data: list[AggregatePublic]
    next_cursor: None = None
    bucket_seconds: int
    source: str = Field(description="The table read: `metrics` (raw rows), `metrics_1m` or `metrics_1h` (rollups).")
    resolution: str = Field(
        description="The tier that served the range: `raw`, `1m` or `1h`. Each is kept for its own number of days "
        "(raw 7, 1m 90, 1h 730 by default); a range is served by the finest one that covers it and divides the bucket."
    )


class SummaryPublic(BaseModel):
    start: datetime
    end: datetime
    events: int = Field(description="Events stored in the range (from the rollup).")
    sensors: int = Field(description="Distinct sensors with events in the range.")
    first_event: datetime | None
    last_event: datetime | None
    count: int
    min: float | None
    max: float | None
    avg: float | None
    p50: float | None
    p95: float | None
    percentiles_exact: bool = Field(
        description="False when p50/p95 were estimated from a sample, or are null because the range starts "
        "before the raw retention."
    )
    resolution: str = Field(description="The rollup tier the totals came from: `1m`, or `1h` beyond the 1m retention.")
    stored_total: int = Field(description="All events ever stored (not filtered).")
    duplicates_ignored: int = Field(description="Re-sent events ignored (not filtered).")
    redeliveries: int = Field(description="Offsets consumed again after a restart or rewind (not filtered).")
    conflicts: int = Field(description="Reused event ids with other content (not filtered).")
    dlq_by_reason: dict[str, int]


class SensorPublic(BaseModel):
    sensor_id: str
    count: int
    last_value: float
    last_timestamp: datetime
    last_seen: datetime
    last_seq: int
    seq_gaps: int
    order_violations: int
    interval_s: float | None = Field(description="Its usual interval: mean time between stored batches; null: unknown.")
    quiet_s: float = Field(description="Seconds since it was last stored.")
    status: Literal["live", "late", "silent"] = Field(
        description="live; late past 3 usual intervals (+5 s); silent past 10 (+15 s): a no-data alarm."
    )


class SeqGapPublic(BaseModel):
    timestamp: datetime
    seq: int
    previous_seq: int = Field(description="The seq stored just before it: previous_seq + 1 .. seq - 1 never arrived.")
    missing: int
    event_id: str


class OrderViolationPublic(BaseModel):
    timestamp: datetime
    seq: int
    after_seq: int = Field(description="The seq stored just before it, which it is not past.")
    event_id: str


class ConflictPublic(BaseModel):
    event_id: str
    partition: int
    offset: int
    seen_at: datetime


class StoredEventPublic(BaseModel):
    timestamp: datetime
    event_id: str
    value: float
    seq: int
    partition: int
    offset: int
    stored_at: datetime


class SensorReport(BaseModel):
    """One sensor over a range of event time: its record, and what went wrong in the range."""

    sensor: SensorPublic
    start: datetime
    end: datetime
    seq_gaps: list[SeqGapPublic] = Field(description="Newest first; at most `limit`.")
    order_violations: list[OrderViolationPublic]
    conflicts: list[ConflictPublic]
    last_events: list[StoredEventPublic]


class Sparklines(BaseModel):
    """Each sensor's mean per minute: `data[sensor][i]` for the minute starting at `start + 60 i`."""

    start: datetime
    minutes: int
    data: dict[str, list[float | None]] = Field(description="null: no reading in that minute.")


class SensorsPage(BaseModel):
    data: list[SensorPublic]
    next_cursor: str | None


class IgnoredCopyPublic(BaseModel):
    partition: int
    offset: int
    kind: Literal["duplicate", "conflict"] = Field(description="duplicate: same content; conflict: other content.")
    seen_at: datetime


class EventPublic(BaseModel):
    event_id: str
    partition: int
    offset: int
    processed_at: datetime
    reading: ReadingPublic | None = Field(description="Null once retention dropped the reading.")
    ignored: list[IgnoredCopyPublic] = Field(
        default_factory=list,
        description="Copies of this id that were not stored, newest first (at most 100, kept for the dedupe window).",
    )


class DeadLetterPublic(BaseModel):
    partition: int = Field(description="Source partition on the main topic.")
    offset: int = Field(description="Source offset on the main topic.")
    reason: str
    detail: str
    poison_label: str | None = Field(description="The producer's deliberate-poison label, if any.")
    dead_at: datetime
    dlq_partition: int | None = Field(description="Where its copy sits on the dead-letter topic (null: unknown).")
    dlq_offset: int | None
    redriven_at: datetime | None
    redriven_event_id: str | None


class ReasonCount(BaseModel):
    reason: str
    count: int


class DeadLettersPage(BaseModel):
    data: list[DeadLetterPublic] = Field(description="Newest first.")
    reasons: list[ReasonCount] = Field(
        description="Every reason stored with its count, largest first; up to 5 s old (one count for all viewers)."
    )


class BytesPublic(BaseModel):
    text: str | None = Field(description="The bytes as text, when they are UTF-8 (escaped for display).")
    hex: str = Field(description="The bytes in hexadecimal.")
    size: int


class HeaderPublic(BaseModel):
    name: str
    value: BytesPublic | None


class DeadLetterDetail(DeadLetterPublic):
    key: BytesPublic | None = Field(description="The original message's key; null if it had none.")
    value: BytesPublic | None = Field(description="The original value; null if it had none or is unknown.")
    headers: list[HeaderPublic] = Field(description="The original headers, then those the consumer added.")
    payload_error: str | None = Field(description="Why the original could not be read back, if it could not.")


class PartitionPublic(BaseModel):
    partition: int
    high_watermark: int
    committed: int | None
    lag: int
    lag_seconds: float
    stalled: bool


class MemberPublic(BaseModel):
    member_id: str
    client_id: str
    host: str
    partitions: list[int]


class TrendPoint(BaseModel):
    at: float
    lag: int


class DiskAlarm(BaseModel):
    kind: str = Field(description="floor (consumption paused), over_budget or near_budget (PostgreSQL's share).")
    detail: str


class RetentionDrop(BaseModel):
    dropped_at: str
    day: str
    reason: str = Field(description="time (older than the raw retention) or size (over the disk budget).")
    rows: int = Field(description="Rows dropped, as the planner estimated them.")
    bytes: int
    tier: str = Field(default="raw", description="raw (raw rows with their dedupe rows) or 1m (1-minute rollups).")


class DiskPublic(BaseModel):
    at: float
    managed: bool = Field(description="True when the local stack runs under a disk budget.")
    budget_bytes: int | None
    floor_bytes: int | None
    shares: dict[str, int] = Field(description="Each component's share of the budget: kafka, postgres, logs.")
    used: dict[str, int] = Field(description="Bytes on disk now, by component.")
    store_bytes: int | None = Field(description="The database's files, which size retention keeps in its share.")
    free_bytes: int | None = Field(description="Least free space on the filesystems the consumer watches.")
    alarms: list[DiskAlarm]
    drops: dict[str, dict[str, int]] = Field(description="Raw days and rows dropped so far, by reason.")
    recent_drops: list[RetentionDrop]
    raw_horizon: datetime | None = Field(
        default=None, description="Raw rows are kept from this time on, once size retention has dropped days."
    )
    minute_horizon: datetime | None = Field(
        default=None, description="1-minute rollups are kept from this time on, once retention has dropped days."
    )


class PipelinePublic(BaseModel):
    at: float = Field(description="When the sample was taken (epoch seconds).")
    topic: str
    group: str
    partitions: list[PartitionPublic]
    total_lag: int
    group_state: str
    members: list[MemberPublic]
    dlq_messages: int
    produced_per_s: float | None
    consumed_per_s: float | None
    stored_per_s: float | None
    trend: list[TrendPoint] = Field(description="Total lag over the last 10 minutes.")
    drain_seconds: float | None = Field(description="Estimated time to zero lag; null when lag is not falling.")
    stalled_partitions: list[int]
    error: str | None
    disk: DiskPublic | None = Field(default=None, description="The disk budget, its use and its alarms.")


class PipelineHistoryPublic(BaseModel):
    """The last minutes of the pipeline, one list per measure, each point at `at[i]`."""

    at: list[float] = Field(description="Each point's time (epoch seconds), oldest first.")
    step_s: float = Field(description="Seconds each point covers: the recording interval times the points merged.")
    keep_s: float = Field(description="How far back the API keeps its history.")
    produced_per_s: list[float | None]
    stored_per_s: list[float | None]
    duplicates_per_s: list[float | None] = Field(description="Copies of stored events ignored per second.")
    dead_lettered_per_s: list[float | None]
    freshness_p50_ms: list[float | None] = Field(description="Event time to stored, median, of the events stored then.")
    freshness_p99_ms: list[float | None]
    partitions: list[int]
    lag: list[list[int | None]] = Field(description="Per partition (in `partitions` order), its lag at each point.")
    lag_seconds: list[list[float | None]] = Field(
        description="Per partition, the age of its oldest unconsumed message."
    )


class DeadLetterTimeline(BaseModel):
    """Dead letters by reason over time: `counts[reason][i]` in the bucket starting at `at[i]`."""

    step_s: int
    at: list[int] = Field(description="Each bucket's start (epoch seconds), oldest first, every bucket of the range.")
    counts: dict[str, list[int]]


class AlarmPublic(BaseModel):
    kind: Literal[
        "kafka_unreachable",
        "store_unreachable",
        "stalled_partitions",
        "no_consumer",
        "silent_sensors",
        "dead_letter_rate",
        "disk_floor",
        "disk_over_budget",
        "disk_near_budget",
    ]
    severity: Literal["critical", "warning"]
    detail: str


class AlarmsPublic(BaseModel):
    at: float
    alarms: list[AlarmPublic] = Field(description="What needs an operator now, critical first; empty when all is well.")


class ConfigPublic(BaseModel):
    version: int
    updated_at: datetime
    updated_by: str
    config: PipelineConfig


class ConfigHistoryPage(BaseModel):
    data: list[ConfigPublic]
    next_cursor: str | None


class Problem(BaseModel):
    detail: str
