"""`sensorpipe bench api`: the API's latency on 10 M readings (2,000 sensors over 24 h), with
`wrk`, idle and while a producer and a consumer write into the same database; raw readings
from hot rows and from a compacted day."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from sensorpipe.contracts import events as ev
from sensorpipe.proof import results as res
from sensorpipe.proof.measure import ProcStats, free_port, wait_http, wrk
from sensorpipe.storage import bench as bq
from sensorpipe.storage import compaction
from sensorpipe.storage.migrate import migrate

if TYPE_CHECKING:
    from sensorpipe.proof.bench import Bench
    from sensorpipe.settings import KafkaSettings


def api_stage(b: Bench) -> res.ApiResult:
    rows = 1_000_000 if b.quick else 10_000_000
    dsn = b.pg.dsn_for("bench_api")
    if bq.loaded_rows(dsn) == rows and bq.newest_age_s(dsn) < 3600:
        # the readings of the last run are still fresh enough for a 24 h window: reuse them
        migrate(dsn)
        b.log(f"api: reusing the {rows:,} readings loaded by the last run")
        load_s = b.results.api.load_seconds if b.results.api else 0.0
    else:
        dsn = b.database("api")
        b.log(f"api: loading {rows:,} readings (2,000 sensors over the last 24 h) with SQL")
        t0 = time.perf_counter()
        bq.load_readings(dsn, rows, sensors=2000)
        load_s = time.perf_counter() - t0
    event_id = bq.load_console_extras(dsn, "sensor-00042")
    k = b.topic("api")
    bq.point_dead_letters(dsn, _dead_letter_copies(k, bq.LOADED_DEAD))
    port = free_port()
    env = b.env(k, dsn, SENSORPIPE_API_PORT=str(port), SENSORPIPE_API_DASHBOARD_DIR="/nonexistent")
    api = b.spawn(["api"], env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/pipeline", 60)
    _check_dead_letter_detail(url)
    stats = ProcStats(api.pid).start()
    q = _day_ending(datetime.now(UTC))
    # The first aggregate repeats one sensor, as a dashboard refreshing a chart does: its
    # hours come from the API's cache (api.hours). The second asks for a different
    # sensor each time, round the 2,000, so nearly every hour is rendered afresh.
    rotate = _rotate(f"/api/readings/aggregate?sensor_id=sensor-%05d&bucket=1m&{q}")
    targets: dict[str, tuple[str, str | None]] = {
        "aggregate (1 sensor, 24 h, 1 m)": (
            f"{url}/api/readings/aggregate?sensor_id=sensor-00042&bucket=1m&{q}",
            None,
        ),
        "aggregate (a different sensor each request, 24 h, 1 m)": (url, rotate),
        "summary (24 h)": (f"{url}/api/summary?{q}", None),
        "pipeline": (f"{url}/api/pipeline", None),
        **_console_targets(url, event_id),
    }
    endpoints: dict[str, res.Wrk] = {}
    secs = 10 if b.quick else 20
    for name, (target, script) in targets.items():
        b.log(f"api: wrk -c10 -t2 -d{secs}s --latency {name}")
        endpoints[name] = wrk(target, secs, script)
    endpoints.update(compacted_readings(b, dsn, url, secs))
    name, result = api_live(b, dsn, url, secs)
    endpoints[name] = result
    cost = stats.stop()
    api.send_signal(signal.SIGTERM)
    api.wait(30)
    return res.ApiResult(rows=rows, load_seconds=round(load_s, 1), endpoints=endpoints, api_process=cost)


def _console_targets(url: str, event_id: str) -> dict[str, tuple[str, str | None]]:
    """The operations console's endpoints: the overview's history and alarms, the fleet worst
    first with its sparklines, a sensor's page, the dead letters and the event lookup. The
    fleet worst first, the sparklines and the dead-letter timeline repeat one request, as a
    refreshing page does: the API shares those answers for 2 s (the fleet) or 5 s, and the dead
    letters' counts by reason for 5 s. A dead letter's detail is a different one each time."""
    hour = f"start={z(datetime.now(UTC) - timedelta(hours=2))}&end={z(datetime.now(UTC) - timedelta(hours=1))}"
    fifty = "&".join(f"sensor_id=sensor-{i:05d}" for i in range(50))
    report = _rotate(f"/api/sensors/sensor-%05d/report?{hour}")
    i = f"(n % {bq.LOADED_DEAD} + 1)"  # the loaded dead letters are numbered from 1
    detail = _rotate("/api/dead-letters/%d/%d", f"{i} % {bq.LOADED_DEAD_PARTITIONS}, {bq.LOADED_DEAD_OFFSET} + {i}")
    return {
        "pipeline history (15 min)": (f"{url}/api/pipeline/history", None),
        "alarms": (f"{url}/api/alarms", None),
        "sensors, quietest first (2,000 sensors)": (f"{url}/api/sensors?sort=quiet&order=desc&limit=50", None),
        "sparklines (50 sensors, 1 h)": (f"{url}/api/sparklines?{fifty}", None),
        "sensor report (a different sensor each request, 1 h)": (url, report),
        f"dead letters (newest 100 of {bq.LOADED_DEAD:,})": (f"{url}/api/dead-letters", None),
        "dead-letter timeline (24 h)": (f"{url}/api/dead-letters/timeline", None),
        "dead-letter detail (a different one each request, read back from the topic)": (url, detail),
        "event lookup": (f"{url}/api/events/{event_id}", None),
        "readings.csv (1 sensor, 1 h)": (f"{url}/api/readings.csv?sensor_id=sensor-00042&{hour}", None),
    }


def _dead_letter_copies(k: KafkaSettings, n: int) -> list[tuple[int, int]]:
    """`n` poison messages on the dead-letter topic of `k`, with the headers the consumer adds,
    as the loaded dead letters' copies: their (partition, offset), in order."""
    at: list[tuple[int, int]] = [(-1, -1)] * n
    p = Producer({**k.client_config(), "linger.ms": 20, "log_level": 0})

    def done(i: int, err: KafkaError | None, m: Message) -> None:
        if err is None:
            at[i] = (int(m.partition() or 0), int(m.offset() or 0))

    for i in range(n):
        key = b"sensor-%05d" % (i % 2000)
        value = b'{"sensor_id": "' + key + b'", "event_id": "truncated'
        headers: list[tuple[str, str | bytes | None]] = [
            (ev.H_REASON, "malformed_json"),
            (ev.H_DETAIL, "loaded for the benchmark"),
        ]
        p.produce(k.dlq_topic, key=key, value=value, headers=headers, on_delivery=partial(done, i))
        p.poll(0)
    if p.flush(60) or (-1, -1) in at:
        raise RuntimeError(f"the benchmark's dead letters were not all written to {k.dlq_topic}")
    return at


def _check_dead_letter_detail(url: str) -> None:
    """The detail of a loaded dead letter holds its original, read back from the topic: what
    the timed requests ask for is served, not an error in a 200."""
    import httpx

    got = httpx.get(f"{url}/api/dead-letters/1/{bq.LOADED_DEAD_OFFSET + 1}", timeout=30).json()
    if got.get("payload_error") is not None or got.get("value") is None:
        raise RuntimeError(f"the loaded dead letters' originals are not served: {got}")


def api_live(b: Bench, dsn: str, url: str, seconds: int, rate: int = 5000) -> tuple[str, res.Wrk]:
    """The first aggregate again, while a producer and a consumer write `rate` events/s
    into the same database, as on a running pipeline: the current hour changes between
    requests and is rendered each time, and the pipeline's processes share the two cores
    with the API. The window ends two minutes ahead, so it holds what is being written.
    The writes change the data: the next run loads it afresh."""
    name = f"aggregate (1 sensor, 24 h, 1 m) while {rate:,} events/s are written"
    k = b.topic("api_live")
    group = f"bench-api-live-{uuid.uuid4().hex[:6]}"
    cons = b.spawn(["consumer"], b.env(k, dsn, SENSORPIPE_CONSUMER_GROUP_ID=group))
    prod = b.spawn(["producer", "--rate", str(rate), "--sensors", "2000", "--duration", str(seconds + 20)], b.env(k))
    try:
        time.sleep(10)  # the consumer has joined its group and is writing
        q = _day_ending(datetime.now(UTC) + timedelta(minutes=2))
        b.log(f"api: wrk -c10 -t2 -d{seconds}s --latency {name}")
        return name, wrk(f"{url}/api/readings/aggregate?sensor_id=sensor-00042&bucket=1m&{q}", seconds)
    finally:
        for proc in (prod, cons):
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


HOT = "readings (a different sensor each request, 1 h of hot rows)"
COMPACTED = "readings (a different sensor each request, 1 h of a compacted day)"


def compacted_readings(b: Bench, dsn: str, url: str, seconds: int) -> dict[str, res.Wrk]:
    """Raw readings of one hour, from hot rows and from a compacted day: the loaded window's
    earlier UTC day is compacted (as the compactor does a closed day), and the same request is
    timed on an hour of each day. The load is made afresh by the next run (its rows changed)."""
    now = datetime.now(UTC)
    hot, cold = now - timedelta(hours=2), now - timedelta(hours=23)
    if hot.date() != now.date() or cold.date() == now.date():
        b.log("api: the loaded window does not hold an hour of each day now (too near midnight): no readings rows")
        return {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = compaction.compact(conn, cold.date())
    events, chunks = (done.events, done.chunks) if done else (0, 0)
    b.log(f"api: compacted {cold.date()}: {events:,} readings in {chunks:,} chunks")
    bq.settle(dsn)
    out: dict[str, res.Wrk] = {}
    for name, start in ((HOT, hot), (COMPACTED, cold)):
        window = f"start={z(start)}&end={z(start + timedelta(hours=1))}"
        script = _rotate(f"/api/readings?sensor_id=sensor-%05d&{window}")
        b.log(f"api: wrk -c10 -t2 -d{seconds}s --latency {name}")
        out[name] = wrk(url, seconds, script)
    return out


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _day_ending(end: datetime) -> str:
    """The query string of the 24 h ending at `end`, times in UTC with a Z."""
    start = end - timedelta(hours=24)
    return f"start={start.isoformat().replace('+00:00', 'Z')}&end={end.isoformat().replace('+00:00', 'Z')}"


def _rotate(query: str, args: str = "n % 2000") -> str:
    """A wrk script whose each request is `query` (a Lua format string) filled with `args` (Lua
    expressions of the request's number n): the next sensor by default. The two threads start
    1,000 apart."""
    return _ROTATE.replace("QUERY", query).replace("ARGS", args)


_ROTATE = """
local threads = 0
function setup(thread)
  thread:set("first", threads * 1000)
  threads = threads + 1
end
function init(args)
  n = first
end
function request()
  n = n + 1
  return wrk.format(nil, string.format("QUERY", ARGS))
end
"""
