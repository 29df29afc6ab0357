"""The consumer service: Kafka batches -> validation -> DLQ + one PostgreSQL transaction -> offsets.

The batching contract:

1. consume up to `batch_max` messages, waiting at most `batch_wait_ms`;
2. decode and validate each; poison is produced to the DLQ topic and *acknowledged* there
   before the batch's transaction starts (a poison message is never committed past
   un-dead-lettered);
3. write the valid events and the dead-letter records in one database transaction;
4. only after that commit, store the next Kafka offsets, and only for partitions still
   assigned to us; librdkafka commits stored offsets in the background (every second, on
   revoke and on close), so a moving group coordinator never blocks the batch loop.

Pipelining: steps 2 (DLQ) and 3 of batch N run on one writer thread while the main thread
consumes and decodes batch N+1 (psycopg and librdkafka release the GIL while they wait).
At most one batch is in flight. Batch N's offsets are stored by the main thread after its
transaction, before batch N+1 is handed to the writer, so offsets still move only past
committed rows, in order. A revoke settles the batch in flight (waits for it and stores its
offsets, which librdkafka then commits) before the partitions are given up.

If a write fails (broker or database outage), nothing of it is committed: each partition of
the failed batch, and of the batch decoded behind it, is rewound to its first offset in
those batches, i.e. its last committed offset, and consumption resumes after an exponential
backoff. Outages are never dead-lettered. Redelivery after a crash is absorbed by
`processed_events` (see storage.writer).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime
from typing import cast

import orjson
import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from sensorpipe.consumer.deadletters import DeadLetters, TransientError
from sensorpipe.consumer.decode import Batch, decode
from sensorpipe.consumer.group import GroupWatch, close_within
from sensorpipe.consumer.guard import DiskGuard, never_hold
from sensorpipe.consumer.hooks import Hooks, hooks_for
from sensorpipe.consumer.knobs import Knobs
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.consumer.parts import KafkaConsumer, KafkaProducer, Parts, consumer_config, kafka_parts
from sensorpipe.consumer.share import SizeRetention
from sensorpipe.consumer.side import SideConnection
from sensorpipe.consumer.stats import read_stats
from sensorpipe.consumer.write import BatchWrite
from sensorpipe.contracts import events as ev
from sensorpipe.runtime.memory import Trimmer, libc_trim
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import positions, retention
from sensorpipe.storage.batch import BatchResult

log = logging.getLogger("sensorpipe.consumer")

# A Kafka consumer's close() gets this long (it commits and leaves the group); one stuck in a
# group state librdkafka never leaves is left behind instead, at most MAX_LEFT_BEHIND times.
CLOSE_TIMEOUT_S = 15.0
MAX_LEFT_BEHIND = 3
# How often, while the group watch says stuck, the cluster is asked whether it answers.
GROUP_PROBE_S = 5.0
# How often freed memory is handed back to the system (runtime.memory): after a backlog
# drain the allocator would otherwise keep the drain's working set resident for good.
TRIM_S = 30.0


class GroupStuckError(RuntimeError):
    """Kafka consumers kept getting stuck in the group: the process should be restarted."""


@dataclass
class InFlight:
    batch: Batch
    future: Future[tuple[BatchResult, float]]  # the result and the seconds the write took


class ConsumerService:
    """Coordinates one Kafka group member's batches, from what `parts` builds (the real
    clients and writers by default; fakes in unit tests) and with `hooks` for fault
    injection (none by default; the settings' failpoint when the wiring asks for it)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ConsumerSettings,
        db: DatabaseSettings,
        metrics: ConsumerMetrics,
        clock: Callable[[], float] = time.time,
        guard: DiskGuard | None = None,
        store_share: int | None = None,
        size_check_s: float = 30.0,
        trimmer: Trimmer | None = None,
        parts: Parts | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.parts = parts or kafka_parts(kafka, settings, db)
        self.hooks = hooks or hooks_for(settings)
        self.decoder = ev.EventDecoder(settings.max_message_bytes)
        # One connection per writer. A batch's rows are split by Kafka partition across them
        # and written in parallel, one transaction each; the first also does maintenance.
        self.writers = list(self.parts.writers())
        self.writer = self.writers[0]
        # One batch in flight: the connections are only ever used by the writer threads while
        # a batch is in flight, and by the main thread otherwise.
        self._pool = ThreadPoolExecutor(max_workers=len(self.writers), thread_name_prefix="db-writer")
        self.dead_letters = DeadLetters(self._new_producer(), kafka.dlq_topic)
        self._write = BatchWrite(self.writers, self._pool, self.dead_letters, self.hooks)
        self._inflight: InFlight | None = None
        self._failed: Batch | None = None  # a batch whose write failed, to rewind
        self.assigned: set[int] = set()
        self.knobs = Knobs(settings.slowdown_ms, settings.batch_max)
        self.side = SideConnection(self.parts.connect)
        self._next_config = 0.0
        self._next_maintain = 0.0
        self._backoff = 0.5
        # The disk: the guard says when to pause; size retention keeps the store inside its
        # share (None: no share, only time retention) and moves the raw horizon.
        self.guard = guard or never_hold()
        self.sizes = None if store_share is None else SizeRetention(store_share, size_check_s, self.guard, metrics)
        self._paused: str | None = None
        self._horizon_us: int | None = None
        # Positions already processed (storage.positions): the topic's Kafka id, the recorded
        # ranges of our partitions as loaded when they were assigned, and the last offset of
        # each partition that this process committed since then.
        self._topic_id: str | None = None
        self._ranges = positions.Ranges()
        self._read_to: dict[int, int] = {}
        self._generation = 0  # which Kafka consumer is ours: _rejoin replaces it
        self._left_behind = 0
        self._next_probe = 0.0
        self.trimmer = trimmer or Trimmer(TRIM_S, libc_trim())
        self.group_watch = GroupWatch((settings.max_poll_interval_ms + settings.session_timeout_ms) / 1000)
        self.consumer = self._new_consumer()

    def _new_producer(self) -> KafkaProducer:
        return self.parts.producer({"linger.ms": 5, "error_cb": self._on_error})

    def _new_consumer(self) -> KafkaConsumer:
        """A group member of our own; `start()` subscribes it."""
        return self.parts.consumer(
            {
                **consumer_config(self.settings),
                "client.id": f"sensorpipe-consumer-{id(self):x}",
                "on_commit": self._on_commit,
                "stats_cb": functools.partial(self._on_stats, self._generation),
                "error_cb": self._on_error,
            }
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.consumer.subscribe(
            [self.kafka.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        self.start()
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.settle()  # the batch in flight is finished and committed first
            # leaves the group; offsets were committed per batch
            if not close_within(self.consumer, CLOSE_TIMEOUT_S):
                log.warning("the Kafka consumer did not close within %.0fs; exiting without it", CLOSE_TIMEOUT_S)
        finally:
            self._pool.shutdown(wait=True)
            self.dead_letters.close()
            for w in self.writers:
                w.close()
            self.side.close()

    # -- rebalance callbacks (called from inside consume(), never mid-batch) -----------------
    def _on_assign(self, c: object, parts: list[TopicPartition]) -> None:
        if c is not self.consumer:
            return  # a consumer replaced by _rejoin, closing in the background
        self.assigned |= {p.partition for p in parts}
        log.info("assigned %s; now %s", sorted(p.partition for p in parts), sorted(self.assigned))
        self.metrics.assigned.set(len(self.assigned))
        self._load_ranges(sorted(p.partition for p in parts))

    def _load_ranges(self, partitions: list[int]) -> None:
        """Learn which positions of newly assigned partitions were processed already. Ranges
        only grow, so a view that is missing or old only sends more messages down the full
        path; on any error the partitions are simply read in full."""
        if self._topic_id is None:
            self._topic_id = self.parts.topic_id()
        if self._topic_id is None or not self.settings.replay_by_position or not partitions:
            return
        with self.side.reading(f"processed ranges not loaded; partitions {partitions} are read in full") as conn:
            self._ranges.load(conn(), self._topic_id, partitions)

    def _on_revoke(self, c: object, parts: list[TopicPartition]) -> None:
        if c is not self.consumer:
            return
        # Finish and commit the batch in flight while these partitions are still ours, so the
        # next owner starts after it instead of writing it again.
        self.settle()
        self._forget(parts)

    def _forget(self, parts: list[TopicPartition]) -> None:
        self.assigned -= {p.partition for p in parts}
        self._ranges.forget([p.partition for p in parts])
        for p in parts:
            self._read_to.pop(p.partition, None)
        log.info("revoked %s; now %s", sorted(p.partition for p in parts), sorted(self.assigned))
        for p in parts:
            with contextlib.suppress(KeyError):  # no lag reported yet for it
                self.metrics.lag.remove(str(p.partition))
        self.metrics.assigned.set(len(self.assigned))

    def _on_lost(self, c: object, parts: list[TopicPartition]) -> None:
        if c is not self.consumer:
            return
        log.warning("lost %s (session expired); their offsets will not be committed", parts)
        self._forget(parts)  # first: the batch in flight must not commit them
        self.settle()

    def _on_stats(self, generation: int, raw: str) -> None:
        if generation != self._generation:
            return  # a replaced consumer's
        st = read_stats(orjson.loads(raw), self.kafka.topic, self.assigned)
        if st.state and self.group_watch.observe(time.monotonic(), st.state, st.join_state):
            log.info("group state %s, join state %s", st.state, st.join_state)
        for p, lag in st.lag.items():
            self.metrics.lag.labels(partition=str(p)).set(lag)
        self.metrics.fetch_queue_bytes.set(st.queued_bytes)

    def _on_error(self, err: KafkaError) -> None:
        log.warning("kafka: %s", err)

    # -- the batch ---------------------------------------------------------------------------
    def step(self, stop: threading.Event | None = None) -> BatchResult | None:
        """Consume and decode the next batch, settle the one in flight (wait for its write,
        commit its offsets), then hand the new one to the writer. Returns what the settled
        batch wrote, if anything; `close()` settles the last one."""
        now = time.monotonic()  # intervals; event time and "today" come from self.clock
        self._refresh_knobs(now)
        stuck = self.group_watch.stuck(now)
        if stuck is not None and now >= self._next_probe:
            self._next_probe = now + GROUP_PROBE_S
            # asked by a new client: the stuck one may get no answer from a healthy cluster; and
            # in an outage a new member could only wait too
            if self.parts.cluster_answers():
                self._rejoin(stuck)
        self.metrics.memory_released.inc(self.trimmer.maybe(now) or 0)
        if now >= self._next_maintain:
            self.settle()  # maintenance uses the writer's connection
            self._maintain(now)
        if self.sizes is not None and self.sizes.due(now):
            self.settle()  # a drop waits for, and then blocks, writes to metrics
            self._size_retention(now, self.sizes)
        reason = self.guard.hold(now)
        self.metrics.free_bytes.set(self.guard.free_bytes if self.guard.free_bytes is not None else -1)
        if reason is not None:
            return self._held(reason)
        if self._paused is not None:
            self._resume()
        msgs = self.consumer.consume(num_messages=self.knobs.batch_max, timeout=self.settings.batch_wait_ms / 1000)
        batch = None
        if msgs:
            self.hooks.failpoint("poll")
            batch = self.decode_batch(msgs)
        result = self.settle()
        if self._failed is not None:
            failed, self._failed = self._failed, None
            self._rewind(failed, batch)  # the new batch is dropped: it is re-read after the rewind
            # Another consumer may have dropped a day this batch wrote to: with the horizon read
            # again, the retry dead-letters that day's events instead of failing on them.
            self._load_horizon()
            self._sleep(self._backoff, stop)
            self._backoff = min(self._backoff * 2, self.settings.retry_max_s)
            return None
        if batch is not None and batch.consumed:
            batch.spans = self._spans(batch)
            write = self._pool.submit(self._write, batch, self.knobs.slowdown_ms, self._topic_id)
            self._inflight = InFlight(batch, write)
        return result

    def _rejoin(self, stuck_s: float) -> None:
        """Replace a Kafka consumer whose group membership did not come back by itself. Its
        partitions, if it still holds any, are given up as on a revoke (the batch in flight
        settles first); the new member joins under a new member id and reads on from the
        committed offsets."""
        log.warning(
            "group member out of the steady state for %.0fs while the cluster answers (state %s, join state %s); "
            "rejoining with a new member",
            stuck_s,
            self.group_watch.state,
            self.group_watch.join_state,
        )
        self.metrics.rejoins.inc()
        self.settle()
        lost = [TopicPartition(self.kafka.topic, p) for p in sorted(self.assigned)]
        if lost:
            self._forget(lost)
        old = self.consumer
        self._generation += 1
        self.consumer = self._new_consumer()  # from here on, the old one's callbacks are ignored
        if not close_within(old, CLOSE_TIMEOUT_S):
            log.warning("the replaced Kafka consumer did not close within %.0fs; left behind", CLOSE_TIMEOUT_S)
            self._left_behind += 1
            if self._left_behind > MAX_LEFT_BEHIND:
                raise GroupStuckError(f"{self._left_behind} stuck Kafka consumers left behind; restart the process")
        self.group_watch.restart()
        self.start()

    # -- pausing for the disk ----------------------------------------------------------------
    def _held(self, reason: str) -> BatchResult | None:
        """One step while the disk guard holds: finish the batch in flight (the floor leaves
        room for it), write nothing new, and keep polling so the group keeps our partitions.
        Anything fetched before the pause took effect is sought back: no offset moves past it."""
        if self._paused != reason:
            log.warning("pausing consumption: %s; the backlog stays in Kafka", reason)
            self._paused = reason
            self.metrics.paused.set(1)
        result = self.settle()
        if self._failed is not None:
            failed, self._failed = self._failed, None
            self._rewind(failed, None)
        parts = self.consumer.assignment()
        if parts:
            self.consumer.pause(parts)
        msgs = self.consumer.consume(
            num_messages=self.knobs.batch_max, timeout=min(0.5, self.settings.batch_wait_ms / 1000)
        )
        first: dict[int, int] = {}
        for m in msgs:
            if m.error() is None:
                p, off = cast(int, m.partition()), cast(int, m.offset())
                first[p] = min(first.get(p, off), off)
        if first:
            self._rewind(Batch(first=first), None)
        return result

    def _resume(self) -> None:
        log.warning("resuming consumption; it had paused because %s", self._paused)
        self._paused = None
        self.metrics.paused.set(0)
        parts = self.consumer.assignment()
        if parts:
            self.consumer.resume(parts)

    def _size_retention(self, now: float, sizes: SizeRetention) -> None:
        with self.side.reading(f"size retention failed; retrying in {sizes.check_s:.0f}s", logging.WARNING) as conn:
            sizes.run(now, conn(), self._today())
        self._load_horizon()  # every pass: other consumers' drops move it too

    def _today(self) -> date:
        """The UTC day by the pipeline's clock (contracts.clock), which names the partitions
        and the retention cutoffs."""
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def _load_horizon(self) -> None:
        with self.side.reading("raw horizon not read; the time window applies") as conn:
            h = retention.horizon(conn())
            self._horizon_us = None if h is None else int(h.timestamp() * 1_000_000)

    def _spans(self, batch: Batch) -> dict[int, tuple[int, int]]:
        """The offsets the batch covers per partition, from just after this process's last
        committed batch of that partition when it read on from there: offsets between that
        batch and this one hold no message (a transaction marker, a compacted record)."""
        out = {}
        for p, first in batch.first.items():
            before = self._read_to.get(p)
            out[p] = (first if before is None else min(first, before + 1), batch.last[p])
        return out

    def settle(self) -> BatchResult | None:
        """Wait for the batch in flight; commit its offsets if its transaction committed."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return None
        try:
            result, write_s = inflight.future.result()
        except (psycopg.Error, TransientError, OSError) as e:
            self.metrics.retries.inc()
            log.warning(
                "batch of %d not written (%s); rewinding, retry in %.1fs", inflight.batch.consumed, e, self._backoff
            )
            for w in self.writers:
                w.reset()
            self._failed = inflight.batch
            return None
        self._backoff = 0.5
        self.hooks.failpoint("after_db_commit")
        t0 = time.perf_counter()
        self.store_offsets(inflight.batch)
        for p, off in inflight.batch.last.items():
            if p in self.assigned:
                self._read_to[p] = off
        self.metrics.observe_batch(inflight.batch, result, write_s, time.perf_counter() - t0)
        return result

    def _window(self) -> ev.Window:
        """The event times accepted now: back to the raw horizon, ahead by the future window."""
        now_us = int(self.clock() * 1_000_000)
        past_s = self.db.retention_days * 86_400
        if self._horizon_us is not None:  # size retention dropped days inside the time window
            past_s = min(past_s, max(0, (now_us - self._horizon_us) // 1_000_000))
        return ev.Window(now_us, past_s, self.settings.future_window_s)

    def decode_batch(self, msgs: list[Message]) -> Batch:
        return decode(msgs, self.decoder, self._window(), self._ranges.through)

    def store_offsets(self, batch: Batch) -> None:
        """Store the batch's next offsets for partitions still ours (its rows are committed)."""
        offsets = [
            TopicPartition(self.kafka.topic, p, off + 1) for p, off in sorted(batch.last.items()) if p in self.assigned
        ]
        if not offsets:
            return
        try:
            self.consumer.store_offsets(offsets=offsets)
        except KafkaException as e:
            # A partition revoked or lost between our check and the store: its next owner
            # re-reads from the last committed offset and processed_events absorbs it.
            log.info("offsets not stored (%s); the partitions' next owner re-reads", e.args[0])
            self.metrics.commit_skipped.inc()

    def _on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """librdkafka's report of a background commit. A failure only means redelivery."""
        failed = [p.partition for p in parts if p.error is not None]
        if err is not None or failed:
            if err is not None and err.code() == KafkaError._NO_OFFSET:
                return  # nothing new was stored since the last commit
            log.info("offset commit failed (%s, partitions %s); the next one covers it", err, failed)
            self.metrics.commit_skipped.inc()

    def _rewind(self, failed: Batch, behind: Batch | None) -> None:
        """Seek each partition of the failed batch, and of the batch decoded behind it, back to
        its first offset in them (= its last committed offset)."""
        first = {**(behind.first if behind else {}), **failed.first}  # the failed batch is earlier
        for p, off in first.items():
            if p not in self.assigned:
                continue
            try:
                self.consumer.seek(TopicPartition(self.kafka.topic, p, off))
            except KafkaException as e:
                log.info("rewind of partition %d skipped (%s); it was revoked", p, e)

    # -- housekeeping ------------------------------------------------------------------------
    def _refresh_knobs(self, now: float) -> None:
        if now < self._next_config:
            return
        self._next_config = now + self.settings.config_poll_s
        with self.side.reading("config store unreachable; keeping the current knobs", logging.DEBUG) as conn:
            new = Knobs.stored(conn(), self.settings.slowdown_ms, self.settings.batch_max)
            if (new.slowdown_ms, new.batch_max) != (self.knobs.slowdown_ms, self.knobs.batch_max):
                log.info("slowdown knob: %d ms per batch, batch max %d (config v%s)", *astuple(new))
            self.knobs = new
            self.metrics.slowdown_ms.set(new.slowdown_ms)

    def _maintain(self, now: float) -> None:
        """Create the coming days' partitions and apply retention, at start and every 10 minutes."""
        if now < self._next_maintain:
            return
        try:
            created, dropped = self.writer.maintain(self._today())
        except psycopg.Error as e:
            log.warning("partition maintenance failed (%s); retrying in 30s", e)
            self.writer.reset()
            self._next_maintain = now + 30
            return
        if created or dropped:
            log.info("partitions: %d created, %d dropped by retention", created, dropped)
        self.metrics.retention_drops.labels(reason="time", tier="raw").inc(dropped)
        self._load_horizon()
        self._next_maintain = now + 600

    @staticmethod
    def _sleep(seconds: float, stop: threading.Event | None) -> None:
        if stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)
