"""The producer's engine: a token bucket, a round-robin over the shard's sensors, and
librdkafka's delivery reports as the only source of truth about what was written.

Ordering: events of one sensor are produced in `seq` order, keyed by `sensor_id`, with
`enable.idempotence=true` and `acks=all`, so librdkafka's retries neither reorder nor
duplicate them. A deliberate duplicate is the same bytes produced right after the
original, before the sensor's next event, so order holds for duplicates too.

Backpressure: when librdkafka's queue is full (`BufferError`), the engine serves delivery
reports until there is room. Nothing is dropped, and memory stays bounded by the queue.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import uuid_utils
from confluent_kafka import KafkaError, Message, Producer
from pydantic import ValidationError

from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.contracts.events import H_POISON
from sensorpipe.producer.ledger import Ledger
from sensorpipe.producer.metrics import Counts, ProducerMetrics
from sensorpipe.producer.poison import poison
from sensorpipe.producer.sensors import Fleet
from sensorpipe.producer.seqstore import SeqStore
from sensorpipe.settings import KafkaSettings, ProducerSettings

log = logging.getLogger("sensorpipe.producer")


def config_from_settings(s: ProducerSettings) -> PipelineConfig:
    return PipelineConfig(
        rate=s.rate,
        sensors=s.sensors,
        duplicate_ratio=s.duplicate_ratio,
        poison_ratio=s.poison_ratio,
        burst_multiplier=s.burst_multiplier,
        burst_every_s=s.burst_every_s,
        burst_duration_s=s.burst_duration_s,
    )


class ConfigPoller:
    """Polls GET /api/producer-config in a thread; the engine picks up `latest` when it changes.

    Unreachable API: the last good configuration stays (or the flags, if none was ever
    fetched). An invalid configuration is rejected and the last good one stays.
    """

    def __init__(self, api_url: str, interval_s: float, fallback: PipelineConfig) -> None:
        self.url = api_url.rstrip("/") + "/api/producer-config"
        self.interval_s = interval_s
        self.latest = fallback
        self.version: int | None = None
        self.reachable: bool | None = None
        self._thread = threading.Thread(target=self._loop, name="config-poller", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self.poll_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    def poll_once(self) -> None:
        try:
            r = httpx.get(self.url, timeout=2.0)
        except httpx.HTTPError as e:
            if self.reachable is not False:
                log.warning(
                    "configuration API unreachable (%s); keeping %s",
                    e,
                    f"configuration v{self.version}" if self.version else "the flags and env settings",
                )
            self.reachable = False
            return
        if self.reachable is False:
            log.info("configuration API reachable again")
        self.reachable = True
        if r.status_code == 404:  # nothing stored yet: the flags stay in force
            return
        try:
            r.raise_for_status()
            body = r.json()
            cfg = PipelineConfig.model_validate(body["config"])
            version = int(body["version"])
        except (httpx.HTTPStatusError, ValueError, KeyError, TypeError, ValidationError) as e:
            log.warning("rejected the configuration from the API (%s); keeping the last good one", e)
            return
        if version != self.version:
            log.info("configuration v%d: %s", version, cfg.model_dump())
        self.latest, self.version = cfg, version


class ProducerEngine:
    def __init__(
        self,
        settings: ProducerSettings,
        kafka: KafkaSettings,
        state_dir: Path,
        metrics: ProducerMetrics,
        shard: int = 0,
        shards: int = 1,
        ledger: Ledger | None = None,
        poller: ConfigPoller | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock  # what events are stamped with (contracts.clock)
        self.kafka = kafka
        self.shard, self.shards = shard, shards
        self.metrics = metrics
        self.ledger = ledger
        self.poller = poller
        self.counts = Counts()
        self.fleet = Fleet(settings.seed, shard, shards)
        self.seqs = SeqStore(state_dir / "producer", shard, shards)
        self.rng = random.Random(settings.seed + 17 * shard)
        self.config = config_from_settings(settings)
        self._slot = 0
        self._sensors_total = 0
        self._ms = -1
        self._iso = ""
        self._started = time.monotonic()
        self.producer = Producer(
            {
                **kafka.producer_config(),
                "client.id": f"sensorpipe-producer-{shard}",
                "partitioner": "murmur2_random",  # same partition as Java clients for a key
                "linger.ms": settings.linger_ms,
                "batch.size": 1_000_000,
                "compression.type": settings.compression,
                "queue.buffering.max.messages": settings.queue_max_messages,
                "queue.buffering.max.kbytes": 262_144,
                "delivery.timeout.ms": settings.delivery_timeout_ms,
                "on_delivery": self._on_event_delivery,
                # Without a ledger only failures need a report: acked = produced - in flight - failed
                # - unknown, and librdkafka skips a Python call per message.
                "delivery.report.only.error": ledger is None,
                "error_cb": self._on_error,
                "log_level": 3,
            }
        )
        self.apply(self.config)

    # -- configuration ---------------------------------------------------------------------
    def apply(self, cfg: PipelineConfig) -> None:
        if cfg.sensors != self._sensors_total:
            self.fleet.resize(cfg.sensors)
            self.seqs.ensure(self.fleet.ids)
            self._sensors_total = cfg.sensors
            self._slot = 0
        self.config = cfg
        self.metrics.configured_rate.set(cfg.rate)

    def rate_now(self, t: float) -> float:
        """This shard's target rate at monotonic time `t`, bursts included."""
        c = self.config
        rate = c.rate / self.shards
        bursting = c.burst_every_s > 0 and c.burst_duration_s > 0 and c.burst_multiplier > 1
        if bursting and (t - self._started) % c.burst_every_s < c.burst_duration_s:
            rate *= c.burst_multiplier
        return rate

    # -- delivery reports (run inside poll()/flush(), on this thread) --------------------------
    def _settle(self, err: KafkaError | None, kind: str, msg: Message, ident: str | None = None) -> None:
        c = self.counts
        if err is None:
            c.acked += 1  # only with a ledger: otherwise successes are derived in sync_acked()
            status = "acked"
        elif err.code() == KafkaError._MSG_TIMED_OUT:
            c.unknown += 1  # may still have been written: the audit treats it as maybe-delivered
            status = "unknown"
        else:
            c.failed += 1
            c.errors[err.name()] = c.errors.get(err.name(), 0) + 1
            status = "failed"
        if self.ledger is not None:
            if ident is not None:
                self.ledger.record(kind, ident, status)
            else:
                value = msg.value()
                self.ledger.record(kind, _field(value, b'"event_id":"'), status, _field(value, b'"timestamp":"'))

    def _on_event_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._settle(err, "e", msg)

    def _on_dup_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._settle(err, "d", msg)

    def _on_poison_delivery(self, reason: str, err: KafkaError | None, msg: Message) -> None:
        self._settle(err, "p", msg, reason)

    def _on_error(self, err: KafkaError) -> None:
        log.warning("kafka: %s", err)

    # -- producing ---------------------------------------------------------------------------
    def _produce(self, key: bytes | None, value: bytes, **kw: Any) -> None:
        while True:
            try:
                self.producer.produce(self.kafka.topic, value, key, **kw)
                self.counts.produced += 1
                return
            except BufferError:
                # librdkafka's queue is full: the broker is slower than we are. Wait for
                # delivery reports instead of dropping or growing memory.
                self.counts.queue_full_waits += 1
                self.producer.poll(0.05)

    def emit(self, n: int) -> None:
        """Produce the next `n` events of the round-robin (plus any injected extras).

        This is the hot path: lookups are hoisted into locals and the common case (a queue
        with room) costs one produce() call per event.
        """
        fleet = self.fleet
        size = len(fleet)
        ids, keys = fleet.ids, fleet.keys
        take = self.seqs.take
        cfg = self.config
        dup, bad = cfg.duplicate_ratio, cfg.poison_ratio
        extras = dup > 0 or bad > 0
        rng = self.rng
        produce = self.producer.produce
        topic = self.kafka.topic
        dumps = orjson.dumps
        uuid7 = uuid_utils.uuid7
        wall = self.clock()
        ms = int(wall * 1000)
        if ms != self._ms:
            self._ms = ms
            self._iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        iso = self._iso
        slot = self._slot
        produced = 0
        try:
            for reading in fleet.readings(slot, n, wall):  # one array computation per round of the fleet
                sid = ids[slot]
                key = keys[slot]
                value = dumps(
                    {
                        "sensor_id": sid,
                        "event_id": str(uuid7()),
                        "timestamp": iso,
                        "value": reading,
                        "seq": take(sid),
                    }
                )
                try:
                    produce(topic, value, key)
                except BufferError:
                    self._produce(key, value)  # waits for room; counts itself
                    produced -= 1
                produced += 1
                if extras:
                    if dup and rng.random() < dup:
                        self._produce(key, value, on_delivery=self._on_dup_delivery)
                        self.counts.duplicates_sent += 1
                    if bad and rng.random() < bad:
                        reason, pkey, pvalue = poison(rng, sid, str(uuid7()), ms)
                        self._produce(
                            pkey,
                            pvalue,
                            headers=[(H_POISON, reason.value)],
                            on_delivery=partial(self._on_poison_delivery, reason.value),
                        )
                        self.counts.poison_sent += 1
                slot += 1
                if slot == size:
                    slot = 0
        finally:
            self._slot = slot
            self.counts.produced += produced

    def run(self, stop: threading.Event, on_tick: Callable[[ProducerEngine], None] | None = None) -> int:
        """Produce until `stop`; then flush and return the exit status (non-zero if any
        delivery failed or stayed unknown)."""
        if self.poller is not None:
            self.poller.start()
        last = time.monotonic()
        tokens = 0.0
        next_tick = last
        try:
            while not stop.is_set():
                now = time.monotonic()
                if self.poller is not None and self.poller.latest is not self.config:
                    self.apply(self.poller.latest)
                rate = self.rate_now(now)
                # a bucket of at most 50 ms of events: smooth, and no burst after a stall
                tokens = min(tokens + (now - last) * rate, max(rate * 0.05, 1.0))
                last = now
                # Emit in chunks of 20 ms of events: the loop wakes about 50 times a second
                # instead of once per event, and fewer, larger produce calls cost the main
                # thread and librdkafka's broker thread less (docs/decisions/008-producer-chunks.md).
                # Each event is stamped when its chunk is emitted, so its latency is unchanged.
                chunk = max(1.0, rate * 0.02)
                n = int(tokens) if tokens >= chunk else 0
                if n:
                    tokens -= n
                    self.emit(n)
                    self.producer.poll(0)
                else:
                    wait = (chunk - tokens) / rate if rate > 0 else 0.1
                    # poll() takes whole milliseconds: a shorter wait would return at once
                    # and spin until the bucket fills
                    self.producer.poll(max(min(wait, 0.1), 0.001))
                if now >= next_tick:
                    next_tick = now + 0.5
                    self._sync_metrics(now)
                    if on_tick is not None:
                        on_tick(self)
        finally:
            if self.poller is not None:
                self.poller.stop()
        return self.shutdown()

    def shutdown(self, timeout: float = 30.0) -> int:
        remaining = self.producer.flush(timeout)
        self.sync_acked()
        if remaining:
            log.warning("%d messages still unconfirmed after %.0fs; counted as unknown", remaining, timeout)
            self.counts.unknown += remaining
        self.seqs.close()
        if self.ledger is not None:
            self.ledger.close()
        self._sync_metrics(time.monotonic())
        c = self.counts
        log.info(
            "final: produced=%d acked=%d failed=%d unknown=%d duplicates_sent=%d poison_sent=%d",
            c.produced,
            c.acked,
            c.failed,
            c.unknown,
            c.duplicates_sent,
            c.poison_sent,
        )
        return 1 if c.failed or c.unknown else 0

    def sync_acked(self) -> None:
        """Without per-message success reports, everything produced that is neither in flight
        nor failed nor unknown was acknowledged."""
        if self.ledger is None:
            c = self.counts
            c.acked = c.produced - len(self.producer) - c.failed - c.unknown

    def _sync_metrics(self, now: float) -> None:
        self.sync_acked()
        self.metrics.sync(self.counts, len(self.producer), now)


def _field(value: bytes | None, prefix: bytes) -> str:
    """A string field inside our own encoding (`prefix` is `"name":"`), found without parsing
    the JSON; "?" when absent."""
    if not value:
        return "?"
    i = value.find(prefix)
    if i < 0:
        return "?"
    i += len(prefix)
    return value[i : value.index(b'"', i)].decode()
