"""The benchmark's results, typed: what each stage measures, what `bench.json` holds, and what
the report reads.

Every stage returns one of the `*Result` structs; `BenchResults` gathers them with the machine
they ran on. `bench.json` is these structs encoded, and `load` reads it back (stages not run
now keep their figures from the last run). Fields added after a run was published default,
so an older `bench.json` still loads. Mappings keyed by data (a process's name, an endpoint,
a codec's table part) stay dicts; everything else is a field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from sensorpipe.proof.audit import AuditReport


class _Struct(msgspec.Struct, kw_only=True):
    pass


class Machine(_Struct, kw_only=True):
    cpu: str
    cores: int
    memory_gib: float
    python: str
    librdkafka: str
    confluent_kafka: str
    postgresql: str
    kafka: str


class Proc(_Struct, kw_only=True):
    """One process's (or process tree's) cost over a measured window, read from /proc."""

    peak_rss_mb: float
    cpu_s: float


class Stage(_Struct, kw_only=True):
    """What every stage's result carries besides its figures."""

    stage_seconds: float = 0.0
    measured_at: str | None = None
    # The machine this stage ran on: stages kept from earlier runs may have run elsewhere.
    machine: Machine | None = None


# -- producer ------------------------------------------------------------------------------
class ProducerRun(Proc, kw_only=True):
    sensors: int
    events_per_s: int
    exit: int | None = None
    ratio_to_reference: float = 0.0


class ProducerReference(_Struct, kw_only=True):
    tool: str
    record_bytes: int
    events_per_s: int
    runs: list[int] = []


class ProducerResult(Stage, kw_only=True):
    runs: list[ProducerRun]
    reference: ProducerReference
    mean_ratio_to_reference: float


# -- consumer ------------------------------------------------------------------------------
class Rate(_Struct, kw_only=True):
    """Events done in a window, and the rate that makes."""

    events: int
    seconds: float
    events_per_s: int | float


class Drain(Proc, kw_only=True):
    consumers: int
    events: int
    seconds: float
    events_per_s: int | None


class Profile(_Struct, kw_only=True):
    seconds: float
    events: int
    events_per_s: int
    share: dict[str, float]  # part of the consumer -> share of its wall time
    text: str


class ConsumerResult(Stage, kw_only=True):
    events: int
    one: Drain
    replay: Drain
    replay_by_id: Drain | None = None
    x2: Drain
    x3: Drain
    copy: Rate
    naive: Rate
    profile: Profile | None = None
    ratio_to_copy: float
    ratio_to_naive: float


# -- end to end ----------------------------------------------------------------------------
class Latency(_Struct, kw_only=True):
    p50: float | None
    p95: float | None
    p99: float | None
    rows: int = 0


class Probe(_Struct, kw_only=True):
    rate: int
    max_lag: int
    max_backlog: int
    lag_steady: bool
    drained: bool


class RateRun(Probe, kw_only=True):
    seconds: float
    produced: int
    lag_end_of_load: int | None = None
    latency_ms: Latency
    resources: dict[str, Proc]  # process name -> its cost
    lag_series: list[tuple[float, int]] = []
    backlog_series: list[tuple[float, int]] = []


class Floor(_Struct, kw_only=True):
    """The transport floor (proof.floor): CPU per event of the least work of this shape."""

    events: int
    cpu_us_per_event: dict[str, float]  # tool or process -> CPU us per event


class E2EResult(Stage, kw_only=True):
    rates: list[RateRun]
    probes: list[Probe] = []
    max_sustainable: int
    floor: Floor | None = None


# -- api -----------------------------------------------------------------------------------
class Wrk(_Struct, kw_only=True):
    """One `wrk` run: latency percentiles, throughput and failed answers."""

    p50_ms: float | None = None
    p75_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    requests_per_s: float | None = None
    non_2xx: int = 0


class ApiResult(Stage, kw_only=True):
    rows: int
    load_seconds: float
    endpoints: dict[str, Wrk]  # endpoint as the report names it -> its run
    api_process: Proc


# -- storage -------------------------------------------------------------------------------
class Codec(_Struct, kw_only=True):
    codec: str
    events: int
    kafka_bytes_per_event: float
    producer_us_per_event: float
    broker_us_per_event: float
    consumer_us_per_event: float
    consumer_events_per_s: int | None
    consumer_peak_rss_mb: float | None = None
    wal_bytes_per_event: float


class Bytes(_Struct, kw_only=True):
    heap: float
    indexes: float


class Anatomy(_Struct, kw_only=True):
    """Where one row's bytes go (storage.bench.row_anatomy)."""

    rows: int
    tuple: float
    line_pointer: int
    page_slack: float
    indexes: dict[str, float]  # index -> bytes per row
    columns: dict[str, int]  # column -> average width


class Compaction(_Struct, kw_only=True):
    """The storage stage's compaction of its drained days (storage.compaction)."""

    events: int
    chunks: int
    seconds: float
    events_per_s: int
    cpu_us_per_event: dict[str, float]  # process (compactor, postgres) -> CPU us per event
    events_per_cpu_s: int
    hot_bytes: dict[str, int]  # part -> bytes on disk before (storage.bench.tier_bytes)
    compacted_bytes: dict[str, int]  # the same after
    hot_bytes_per_event: float  # rows and dedupe
    compacted_bytes_per_event: float  # chunks, directory and the emptied raw partitions
    encoded_bytes_per_event: float  # what the codec wrote, before PostgreSQL's own overhead


class StorageResult(Stage, kw_only=True):
    events: int
    codecs: list[Codec]
    references: list[tuple[str, str]]  # (published figure, its source)
    anatomy: dict[str, Anatomy] = {}  # table part -> anatomy
    postgres: dict[str, Bytes]  # table part -> bytes per event
    postgres_bytes_per_event: float
    compaction: Compaction | None = None


# -- peer ----------------------------------------------------------------------------------
class SinkRun(_Struct, kw_only=True):
    """One sink's drain of the preloaded events (proof.peer_stage)."""

    sink: str
    events: int
    seconds: float
    events_per_s: int
    cpu_us_per_event: dict[str, float]  # process (the sink, postgres, kafka) -> CPU us per event
    events_per_cpu_s: int  # events over the CPU of all three
    peak_rss_mb: float  # the sink process
    failed: list[str] = []  # the first line of each failed task's error


class Outcome(_Struct, kw_only=True):
    case: str
    fed: int  # messages
    ours: str
    peers: list[str]  # one per configuration of Correctness.peer_configs


class Correctness(_Struct, kw_only=True):
    peer_configs: list[str]
    outcomes: list[Outcome]
    peer_failed: list[list[str]]  # per configuration: the first line of each failed task's error


class PeerRate(_Struct, kw_only=True):
    """The peer end to end at one offered rate (proof.peer_rates)."""

    rate: int
    produced: int
    stored: int
    drained: bool
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_event: dict[str, float]  # process -> CPU us per produced event
    peak_rss_mb: float  # the Connect worker
    failed: list[str] = []


class PeerResult(Stage, kw_only=True):
    peer: str  # the peer's versions
    events: int
    runs: list[SinkRun]
    correctness: Correctness
    rates: list[PeerRate] = []


# -- soak ----------------------------------------------------------------------------------
class SoakSample(_Struct, kw_only=True):
    t: int
    rss_mb: dict[str, float]  # process -> MB
    pss_mb: dict[str, float] = {}
    consumer_heap: dict[str, float] | None = None  # measure (see report_long._HEAP) -> MB or thousands
    lag: int
    produced: int = 0
    kafka_bytes: int
    postgres_bytes: int
    wal_bytes: int = 0
    drops: dict[str, int]  # retention's reason -> days dropped
    over_share: bool
    compaction_backlog: int | None = None  # closed days still holding rows (None: no compactor)
    compacted_events: int = 0  # events held in the compacted tier


class Statement(_Struct, kw_only=True):
    wait: str
    statement: str
    seen: int


class Activity(_Struct, kw_only=True):
    samples: int
    interval_s: float
    top: list[Statement]


class WindowedWrk(Wrk, kw_only=True):
    """A `wrk` run in the soak, with what the database did meanwhile."""

    activity: Activity | None = None
    drops_during: dict[str, int] = {}


class ApiWindow(_Struct, kw_only=True):
    simulated_at: str = ""
    aggregate: WindowedWrk
    summary: WindowedWrk


class Ends(_Struct, kw_only=True):
    start: ApiWindow | None = None
    end: ApiWindow | None = None


class MemoryEnds(_Struct, kw_only=True):
    start: dict[str, dict[str, float] | None] | None = None  # process -> kind of mapping -> MB
    end: dict[str, dict[str, float] | None] | None = None


class FloorHold(_Struct, kw_only=True):
    held_s: int
    stored_while_held: int
    lag_at_end_of_hold: int
    resumed_after_s: float


class Shares(_Struct, kw_only=True):
    kafka: int
    postgres: int


class Tiers(_Struct, kw_only=True):
    """How far back each tier reaches at the end, in simulated days."""

    raw: float | None
    minute: float | None = msgspec.field(name="1m")
    hour: float | None = msgspec.field(name="1h")


class SoakResult(Stage, kw_only=True):
    minutes: float
    rate: int
    sensors: int = 2000
    speed: float
    events_per_simulated_day: int
    shares: Shares
    samples: list[SoakSample]
    api_p99: Ends = msgspec.field(default_factory=Ends)
    memory: MemoryEnds = msgspec.field(default_factory=MemoryEnds)
    floor_hold: FloorHold | None = None
    drained: bool
    resources: dict[str, Proc] = {}
    audit: AuditReport
    tiers_at_end: Tiers | None = None


class BenchResults(_Struct, kw_only=True, omit_defaults=True):
    machine: Machine | None = None
    quick: bool = False
    producer: ProducerResult | None = None
    consumer: ConsumerResult | None = None
    e2e: E2EResult | None = None
    api: ApiResult | None = None
    storage: StorageResult | None = None
    peer: PeerResult | None = None
    soak: SoakResult | None = None


def load(path: Path, log: Callable[[str], None] = lambda _m: None) -> BenchResults:
    """The results in `path`, or none if it does not exist. A stage recorded in a shape these
    structs no longer read (a field since made required) is left out, and said so: the next
    run of that stage records it again."""
    if not path.is_file():
        return BenchResults()
    raw = msgspec.json.decode(path.read_bytes())
    if not isinstance(raw, dict):
        raise msgspec.ValidationError(f"{path} does not hold benchmark results")
    out = BenchResults()
    for name, value in raw.items():
        if name not in BenchResults.__struct_fields__:
            continue  # a field no longer recorded
        try:
            setattr(out, name, getattr(msgspec.convert({name: value}, BenchResults), name))
        except msgspec.ValidationError as e:
            log(f"{path}: the recorded {name} results are in an older shape and are left out ({e})")
    return out


def save(results: BenchResults, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
