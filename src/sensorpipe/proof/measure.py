"""Measuring tools of the benchmarks: CPU time and RSS of processes (from /proc), Kafka lag,
HTTP latency (wrk), the reference consumers (naive, profiled), and the machine's description."""

from __future__ import annotations

import importlib.metadata
import os
import platform as pyplatform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition

from sensorpipe.proof import results as res
from sensorpipe.runtime.procs import PlatformError
from sensorpipe.settings import DatabaseSettings, KafkaSettings
from sensorpipe.storage import bench as bq

Log = Callable[[str], None]


def lag_steady(lags: list[tuple[float, int]], rate: float, seconds: float) -> bool:
    """Lag holds steady when, over the second half of the load, it neither trends upward (a
    least-squares slope under 1% of the rate per second) nor exceeds 5 seconds of events."""
    tail = [(t, lag) for t, lag in lags if seconds * 0.5 < t <= seconds]
    if len(tail) < 3:
        return False
    n = len(tail)
    mt = sum(t for t, _ in tail) / n
    ml = sum(lag for _, lag in tail) / n
    var = sum((t - mt) ** 2 for t, _ in tail)
    slope = sum((t - mt) * (lag - ml) for t, lag in tail) / var if var else 0.0
    return slope < 0.01 * rate and max(lag for _, lag in tail) < 5 * rate


def _proc(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds so far, RSS in kB) of a process, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    m = re.search(r"VmRSS:\s+(\d+)", status)
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return int(fields[1]), cpu, int(m.group(1)) if m else 0


def _pss_kb(pid: int) -> int:
    """Proportional set size in kB: each shared page divided among the processes that map it,
    so the PSS of PostgreSQL's backends sums its shared buffers once (their RSS counts them
    once per backend that touched them)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


@dataclass
class ProcStats:
    """CPU seconds used *during the measurement* and peak RSS of a process, sampled from /proc.
    With `children`, the process's children count too (PostgreSQL's backends): CPU summed,
    RSS summed at each sample."""

    pid: int
    children: bool = False
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0  # at the last sample
    cpu_s: float = 0.0
    _base: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _pids(self) -> list[int]:
        if not self.children:
            return [self.pid]
        kids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                info = _proc(int(d.name))
                if info is not None and info[0] == self.pid:
                    kids.append(int(d.name))
        return [self.pid, *kids]

    def start(self) -> ProcStats:
        for pid in self._pids():
            info = _proc(pid)
            if info is not None:
                self._base[pid] = info[1]
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for pid in self._pids():
                info = _proc(pid)
                if info is None:
                    continue
                self._base.setdefault(pid, 0.0)  # a process born during the run counts from zero
                self._last[pid] = info[1]
                rss += info[2]
            if not rss and _proc(self.pid) is None:
                return
            self.rss_mb = rss / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb)
            self.cpu_s = sum(self._last[p] - self._base.get(p, 0.0) for p in self._last)
            time.sleep(0.25)

    def pss_mb(self) -> float:
        """The process's PSS now (with `children`, summed over them too)."""
        return sum(_pss_kb(pid) for pid in self._pids()) / 1024

    def stop(self) -> res.Proc:
        self._stop.set()
        return res.Proc(peak_rss_mb=round(self.peak_rss_mb, 1), cpu_s=round(self.cpu_s, 2))


def naive_consume(k: KafkaSettings, dsn: str, seconds: float) -> res.Rate:
    """The floor: decode each message and write it in a transaction of its own, then commit
    its offset. Runs for `seconds` and reports the rate it reached."""
    from sensorpipe.contracts.events import EventDecoder, SensorEvent, Window

    c = Consumer(
        {
            "bootstrap.servers": k.bootstrap(),
            "group.id": f"bench-naive-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    c.subscribe([k.topic])
    decoder = EventDecoder(65536)
    n = 0
    with psycopg.connect(dsn) as conn:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            m = c.poll(1.0)
            if m is None or m.error() is not None:
                continue
            window = Window(int(time.time() * 1e6), 7 * 86_400, 86_400)
            ev = decoder.decode(m.key(), m.value(), window)
            if isinstance(ev, SensorEvent):
                ts = datetime.fromtimestamp(ev.ts_micros() / 1e6, UTC)
                bq.naive_insert(
                    conn, ev.event_id, ev.sensor_id, ts, ev.value, ev.seq, int(m.partition() or 0), int(m.offset() or 0)
                )
            c.commit(message=m, asynchronous=False)
            n += 1
        elapsed = time.monotonic() - t0
    c.close()
    return res.Rate(events=n, seconds=round(elapsed, 1), events_per_s=round(n / elapsed, 1))


def profile_consumer(k: KafkaSettings, dsn: str, seconds: float) -> res.Profile:
    """Where one consumer's time goes: pyinstrument over its batch loop, on the preloaded topic.
    Reported: the share of wall time in the database round trips, in decoding, and in Kafka."""
    from pyinstrument import Profiler

    from sensorpipe.consumer.metrics import ConsumerMetrics
    from sensorpipe.consumer.service import ConsumerService
    from sensorpipe.settings import ConsumerSettings

    svc = ConsumerService(
        k,
        ConsumerSettings(group_id=f"bench-prof-{uuid.uuid4().hex[:6]}", metrics_port=0),
        DatabaseSettings(url=dsn),
        ConsumerMetrics(),
    )
    svc.start()
    stored = 0
    profiler = Profiler(interval=0.001)
    profiler.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        r = svc.step()
        stored += r.stored if r else 0
    session = profiler.stop()
    svc.close()
    total = session.duration or 1.0
    root = session.root_frame()

    def share(name: str) -> float:
        """Fraction of wall time spent under frames whose function is `name`."""
        found = 0.0
        stack = [root] if root else []
        while stack:
            f = stack.pop()
            if f.function == name:
                found += f.time
                continue
            stack.extend(f.children)
        return round(found / total, 3)

    return res.Profile(
        seconds=round(total, 1),
        events=stored,
        events_per_s=round(stored / total),
        share={
            # The write runs on the writer thread, overlapped with the next batch's decode; the
            # main thread's profile shows what of it was not hidden: the wait in settle.
            "waiting for the database write (settle)": round(share("settle") - share("store_offsets"), 3),
            "decode and validate (decode_batch)": share("decode_batch"),
            "Kafka consume": round(share("step") - share("settle") - share("decode_batch"), 3),
            "offset commit": share("store_offsets"),
        },
        text=_portable(profiler.output_text(unicode=False, color=False, show_all=False))[:6000],
    )


def _portable(text: str) -> str:
    """A profile without this machine's paths (the report is committed)."""
    root = str(Path(__file__).resolve().parents[2])
    lines = [line.replace(root + "/", "") for line in text.splitlines() if not line.startswith("Profile at ")]
    return "\n".join(line.replace(sys.prefix + "/", "") for line in lines)


def consumer_lag(k: KafkaSettings, group: str, high_watermark: int) -> int:
    c = Consumer({"bootstrap.servers": k.bootstrap(), "group.id": group, "log_level": 0})
    try:
        parts = c.list_topics(k.topic, timeout=10).topics[k.topic].partitions
        committed = c.committed([TopicPartition(k.topic, p) for p in parts], timeout=10)
        return high_watermark - sum(tp.offset for tp in committed if tp.offset >= 0)
    finally:
        c.close()


def topic_end(bootstrap: str, topic: str) -> int:
    """The sum of `topic`'s high watermarks, or 0 while the topic does not exist (a topic a
    sink creates on its first write)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-hw", "log_level": 0})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    finally:
        c.close()


def platform_pids(state_dir: Path) -> dict[str, int]:
    from sensorpipe.runtime.procs import RunDir

    return {r.name: r.pid for r in RunDir(state_dir).all() if r.name in ("kafka", "postgres") and r.alive()}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise PlatformError(f"{url} did not answer within {timeout:.0f}s")


def scrape(url: str) -> dict[tuple[str, str], float] | None:
    """A Prometheus endpoint's samples, keyed by name and the value of their one label (""
    when unlabelled); None when it does not answer."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    return {
        (sample.name, next(iter(sample.labels.values()), "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


_WRK_LINE = re.compile(r"^\s+(50|75|90|99)(?:\.\d+)?%\s+([\d.]+)(us|ms|s)\s*$")


def wrk(url: str, seconds: int, script: str | None = None) -> res.Wrk:
    if shutil.which("wrk") is None:
        raise PlatformError("the API benchmark needs wrk: apt-get install wrk (`make bench` installs it)")
    cmd = ["wrk", "-c10", "-t2", f"-d{seconds}s", "--latency", "--timeout", "10s", url]
    with tempfile.TemporaryDirectory() as tmp:
        if script:
            lua = Path(tmp) / "requests.lua"
            lua.write_text(script)
            cmd[-1:-1] = ["-s", str(lua)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
    pct: dict[str, float] = {}
    for line in out.stdout.splitlines():
        m = _WRK_LINE.match(line)
        if m:
            value = float(m.group(2)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(3)]
            pct[f"p{m.group(1)}_ms"] = round(value, 2)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    return res.Wrk(
        **pct,
        requests_per_s=float(rps.group(1)) if rps else None,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def machine() -> res.Machine:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    import confluent_kafka

    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return res.Machine(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        memory_gib=round(mem_kb / 1024 / 1024, 1),
        python=pyplatform.python_version(),
        librdkafka=confluent_kafka.libversion()[0],
        confluent_kafka=importlib.metadata.version("confluent-kafka"),
        postgresql=pg,
        kafka=next(
            (p.name[len("kafka_2.13-") : -4] for p in Path(".cache/kafka/libs").glob("kafka_2.13-*.jar")), "KAFKA_HOME"
        ),
    )
