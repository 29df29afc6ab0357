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
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from sensorpipe.consumer.decode import Batch, decode, header_list
from sensorpipe.consumer.group import GroupWatch, close_within
from sensorpipe.consumer.guard import DiskGuard, HighWater, never_hold
from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.contracts import events as ev
from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.contracts.disk import human
from sensorpipe.runtime.kafka import cluster_answers
from sensorpipe.runtime.memory import Trimmer, libc_trim
from sensorpipe.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import config_store, positions, retention
from sensorpipe.storage.batch import BatchResult, DeadLetter
from sensorpipe.storage.writer import BatchWriter

log = logging.getLogger("sensorpipe.consumer")

# How long librdkafka may sit on stored offsets before committing them. Offsets are only
# *stored* by us, after the database commit; the commit itself runs in librdkafka's
# background, on revoke and on close. A synchronous commit is never used: it can block the
# batch loop indefinitely while the group coordinator moves (seen in the chaos suite).
# Lag (in /api/pipeline, the dashboard and the benchmarks) is measured from committed offsets,
# so this interval adds up to its own length of events to it: at 10,000 events/s,
# per-partition lag swung between about 400 and 1,200 with 1 s, against 200 to 550 with
# 250 ms. 250 ms was tried and taken back: with it, one clean-clone run of the fault suite
# saw a consumer that lost its partitions during a broker freeze (commits failing with
# UNKNOWN_MEMBER_ID) never get them back. Not proven to be the cause; 1 s has a long record.
AUTO_COMMIT_INTERVAL_MS = 1_000


# A Kafka consumer's close() gets this long (it commits and leaves the group); one stuck in a
# group state librdkafka never leaves is left behind instead, at most MAX_LEFT_BEHIND times.
CLOSE_TIMEOUT_S = 15.0
MAX_LEFT_BEHIND = 3
# How often, while the group watch says stuck, the cluster is asked whether it answers.
GROUP_PROBE_S = 5.0
GROUP_PROBE_TIMEOUT_S = 5.0
# How often freed memory is handed back to the system (runtime.memory): after a backlog
# drain the allocator would otherwise keep the drain's working set resident for good.
TRIM_S = 30.0


class GroupStuckError(RuntimeError):
    """Kafka consumers kept getting stuck in the group: the process should be restarted."""


class TransientError(RuntimeError):
    """A broker or database problem: retry the batch, never dead-letter it."""


@dataclass
class InFlight:
    batch: Batch
    future: Future[tuple[BatchResult, float]]  # the result and the seconds the write took


@dataclass
class Knobs:
    """The effective slowdown knob: the larger of the flag and the stored configuration."""

    slowdown_ms: int
    batch_max: int  # from the settings, lowered by the stored configuration
    version: int | None = None

    @classmethod
    def effective(cls, slowdown_ms: int, batch_max: int, stored: PipelineConfig | None, version: int | None) -> Knobs:
        """The flags' knobs with the stored configuration applied: the larger slowdown, the
        smaller batch."""
        if stored is None:
            return cls(slowdown_ms, batch_max, version)
        if stored.consumer_batch_max is not None:
            batch_max = min(batch_max, stored.consumer_batch_max)
        return cls(max(slowdown_ms, stored.consumer_slowdown_ms), batch_max, version)


class ConsumerService:
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
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.decoder = ev.EventDecoder(settings.max_message_bytes)
        # One connection per writer. A batch's rows are split by Kafka partition across them
        # and written in parallel, one transaction each; the first also does maintenance.
        rollups = (db.rollup_1m_days, db.rollup_1h_days)
        self.writers = [
            BatchWriter(db.dsn(), db.retention_days, settings.db_idle_tx_timeout_ms, rollups)
            for _ in range(settings.writers)
        ]
        self.writer = self.writers[0]
        self._failpoint_hits = 0
        # One batch in flight: the connections are only ever used by the writer threads while
        # a batch is in flight, and by the main thread otherwise. The batch's first part is
        # written on the thread that runs `_write`, the others on the remaining threads.
        self._pool = ThreadPoolExecutor(max_workers=settings.writers, thread_name_prefix="db-writer")
        self._inflight: InFlight | None = None
        self._failed: Batch | None = None  # a batch whose write failed, to rewind
        self.assigned: set[int] = set()
        self.knobs = Knobs(settings.slowdown_ms, settings.batch_max)
        self._config_conn: psycopg.Connection[Any] | None = None
        self._next_config = 0.0
        self._next_maintain = 0.0
        self._backoff = 0.5
        # The disk: the guard says when to pause; size retention keeps the store inside its
        # share (None: no share, only time retention) and moves the raw horizon.
        self.guard = guard or never_hold()
        self.store_share = store_share
        self.size_check_s = size_check_s
        self._high_water = HighWater(size_check_s)
        self._next_size = 0.0
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
        self.dlq_producer = Producer(
            {
                **kafka.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "error_cb": self._on_error,
            }
        )

    def _new_consumer(self) -> Consumer:
        """A group member of our own; `start()` subscribes it."""
        return Consumer(
            {
                **self.kafka.client_config(),
                "group.id": self.settings.group_id,
                "client.id": f"sensorpipe-consumer-{id(self):x}",
                # At-least-once, librdkafka's way: we store a partition's offset only after the
                # batch's transaction committed; auto-commit sends stored offsets every second,
                # when partitions are revoked (not when lost) and on close.
                "enable.auto.commit": True,
                "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
                "enable.auto.offset.store": False,
                "on_commit": self._on_commit,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.settings.session_timeout_ms,
                "heartbeat.interval.ms": max(1_000, self.settings.session_timeout_ms // 5),
                "max.poll.interval.ms": self.settings.max_poll_interval_ms,
                # Bounds prefetch memory. It counts fetched bytes, which for a compressed
                # topic decompress into several times as many: see ConsumerSettings.
                "queued.max.messages.kbytes": self.settings.prefetch_kbytes,
                "fetch.wait.max.ms": 50,
                "statistics.interval.ms": 5_000,
                "stats_cb": functools.partial(self._on_stats, self._generation),
                "error_cb": self._on_error,
                "log_level": 3,
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
            self._settle()  # the batch in flight is finished and committed first
            # leaves the group; offsets were committed per batch
            if not close_within(self.consumer, CLOSE_TIMEOUT_S):
                log.warning("the Kafka consumer did not close within %.0fs; exiting without it", CLOSE_TIMEOUT_S)
        finally:
            self._pool.shutdown(wait=True)
            self.dlq_producer.flush(10)
            for w in self.writers:
                w.close()
            if self._config_conn is not None:
                self._config_conn.close()

    # -- rebalance callbacks (called from inside consume(), never mid-batch) -----------------
    def _on_assign(self, c: Consumer, parts: list[TopicPartition]) -> None:
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
            self._topic_id = self._describe_topic()
        if self._topic_id is None or not self.settings.replay_by_position or not partitions:
            return
        try:
            self._ranges.load(self._side_connection(), self._topic_id, partitions)
        except psycopg.Error as e:
            log.info("processed ranges not loaded (%s); partitions %s are read in full", e, partitions)
            self._close_side_connection()

    def _describe_topic(self) -> str | None:
        """The topic's Kafka id, which tells this topic from one recreated under its name."""
        try:
            admin = AdminClient(self.kafka.client_config())
            futures = admin.describe_topics(TopicCollection([self.kafka.topic]), request_timeout=10)
            return str(futures[self.kafka.topic].result(timeout=15).topic_id)
        except (KafkaException, TimeoutError) as e:
            log.warning("topic id of %s unknown (%s): positions are neither recorded nor skipped", self.kafka.topic, e)
            return None

    def _on_revoke(self, c: Consumer, parts: list[TopicPartition]) -> None:
        if c is not self.consumer:
            return
        # Finish and commit the batch in flight while these partitions are still ours, so the
        # next owner starts after it instead of writing it again.
        self._settle()
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

    def _on_lost(self, c: Consumer, parts: list[TopicPartition]) -> None:
        if c is not self.consumer:
            return
        log.warning("lost %s (session expired); their offsets will not be committed", parts)
        self._forget(parts)  # first: the batch in flight must not commit them
        self._settle()

    def _on_stats(self, generation: int, raw: str) -> None:
        if generation != self._generation:
            return  # a replaced consumer's
        stats = orjson.loads(raw)
        group = stats.get("cgrp")
        if group and self.group_watch.observe(time.monotonic(), group.get("state", ""), group.get("join_state", "")):
            log.info("group state %s, join state %s", self.group_watch.state, self.group_watch.join_state)
        queued = 0
        for p, info in stats.get("topics", {}).get(self.kafka.topic, {}).get("partitions", {}).items():
            if p == "-1" or int(p) not in self.assigned:
                continue
            queued += info.get("fetchq_size", 0)
            if info.get("consumer_lag", -1) >= 0:
                self.metrics.lag.labels(partition=p).set(info["consumer_lag"])
        self.metrics.fetch_queue_bytes.set(queued)

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
            if cluster_answers(self.kafka.bootstrap(), GROUP_PROBE_TIMEOUT_S, self.kafka.security_protocol):
                self._rejoin(stuck)
        self.metrics.memory_released.inc(self.trimmer.maybe(now) or 0)
        if now >= self._next_maintain:
            self._settle()  # maintenance uses the writer's connection
            self._maintain(now)
        if self.store_share is not None and now >= self._next_size:
            self._settle()  # a drop waits for, and then blocks, writes to metrics
            self._size_retention(now)
        reason = self.guard.hold(now)
        self.metrics.free_bytes.set(self.guard.free_bytes if self.guard.free_bytes is not None else -1)
        if reason is not None:
            return self._held(reason)
        if self._paused is not None:
            self._resume()
        msgs = self.consumer.consume(num_messages=self.knobs.batch_max, timeout=self.settings.batch_wait_ms / 1000)
        batch = None
        if msgs:
            self._failpoint("poll")
            batch = self._decode(msgs)
        result = self._settle()
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
            self._inflight = InFlight(batch, self._pool.submit(self._write, batch, self.knobs.slowdown_ms))
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
        self._settle()
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
        result = self._settle()
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

    def _size_retention(self, now: float) -> None:
        """Keep the store inside its share: drop the oldest raw days from the high-water mark
        on; when only today's are left and it is over the share, hold consumption until space
        is freed or the share grows."""
        assert self.store_share is not None
        self._next_size = now + self.size_check_s
        mark = self._high_water.mark(self.store_share)
        try:
            r = retention.enforce(self._side_connection(), self.store_share, self._today(), mark)
        except psycopg.Error as e:
            log.warning("size retention failed (%s); retrying in %.0fs", e, self.size_check_s)
            self._close_side_connection()
            return
        self._high_water.observe(now, r.found_bytes, r.store_bytes)
        for d in r.drops:
            log.warning(
                "size retention: dropped %s day %s (about %d rows, %s): the store held %s, over its "
                "high-water mark of %s (share %s)",
                "raw" if d.tier == "raw" else "1-minute rollup",
                d.day,
                d.rows,
                human(d.bytes),
                human(r.found_bytes),
                human(mark),
                human(r.share),
            )
            self.metrics.retention_drops.labels(reason="size", tier=d.tier).inc()
            self.metrics.retention_rows.labels(reason="size", tier=d.tier).inc(d.rows)
        self._load_horizon()  # every pass: other consumers' drops move it too
        self.metrics.store_bytes.set(r.store_bytes)
        self.guard.over_budget = (
            f"the store holds {human(r.store_bytes)}, over its share of {human(r.share)}, with nothing before "
            f"today left to drop but hourly rollups"
            if r.over
            else None
        )

    def _today(self) -> date:
        """The UTC day by the pipeline's clock (contracts.clock), which names the partitions
        and the retention cutoffs."""
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def _load_horizon(self) -> None:
        try:
            h = retention.horizon(self._side_connection())
        except psycopg.Error as e:
            log.info("raw horizon not read (%s); the time window applies", e)
            self._close_side_connection()
            return
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

    def _write(self, batch: Batch, slowdown_ms: int) -> tuple[BatchResult, float]:
        """On a writer thread: DLQ first, then the batch's rows, one transaction per part.

        Parts hold disjoint partitions, hence disjoint sensors, rollup rows and counters, so
        their transactions do not wait on each other (only copies of one event id under two
        keys can; PostgreSQL then settles it). The batch counts as written only when every
        part committed: if one fails, the whole batch is rewound and re-read, and the parts
        that did commit come back as redeliveries, which store nothing twice.
        """
        t0 = time.perf_counter()
        self._dead_letter(batch)
        # Every partition read, with its dead letters and recorded positions, goes to one
        # part: a range never claims a dead letter or row that another transaction holds.
        owner = batch.cols.owners(len(self.writers), also=batch.first)
        parts = batch.cols.shards(len(self.writers), owner)
        dead: list[list[DeadLetter]] = [[] for _ in parts]
        for d in batch.dead:
            dead[owner[d.kafka_partition]].append(d)
        pos = [self._positions(batch, owner, i) for i in range(len(parts))]
        others = [
            self._pool.submit(self.writers[i].write, part, dead[i], slowdown_ms, None, pos[i])
            for i, part in enumerate(parts[1:], 1)
        ]
        try:
            result = self.writer.write(
                parts[0], dead[0], slowdown_ms, lambda: self._failpoint("before_db_commit"), pos[0]
            )
        finally:
            wait(others)  # every part has finished, even when this one failed
        for f in others:
            result = result.plus(f.result())  # raises that part's error, if it failed
        return result, time.perf_counter() - t0

    def _positions(self, batch: Batch, owner: dict[int, int], part: int) -> positions.Positions | None:
        """What part `part` of the batch records: its partitions' spans and known positions."""
        if self._topic_id is None:
            return None
        mine = [p for p in batch.spans if owner[p] == part]
        return positions.Positions(
            self._topic_id,
            spans={p: batch.spans[p] for p in mine},
            known={p: batch.known[p] for p in mine if p in batch.known},
        )

    def _settle(self) -> BatchResult | None:
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
        self._failpoint("after_db_commit")
        t0 = time.perf_counter()
        self._commit(inflight.batch)
        for p, off in inflight.batch.last.items():
            if p in self.assigned:
                self._read_to[p] = off
        self._observe(inflight.batch, result, write_s, time.perf_counter() - t0)
        return result

    def _window(self) -> ev.Window:
        """The event times accepted now: back to the raw horizon, ahead by the future window."""
        now_us = int(self.clock() * 1_000_000)
        past_s = self.db.retention_days * 86_400
        if self._horizon_us is not None:  # size retention dropped days inside the time window
            past_s = min(past_s, max(0, (now_us - self._horizon_us) // 1_000_000))
        return ev.Window(now_us, past_s, self.settings.future_window_s)

    def _decode(self, msgs: list[Message]) -> Batch:
        return decode(msgs, self.decoder, self._window(), self._ranges.through)

    def _dead_letter(self, batch: Batch) -> None:
        """Produce every poison message to the DLQ and wait for the broker's acks."""
        if not batch.dlq:
            return
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for m, d in zip(batch.dlq, batch.dead, strict=True):
            headers: list[tuple[str, str | bytes | None]] = [*header_list(m)]
            headers += [
                (ev.H_REASON, d.reason),
                (ev.H_DETAIL, d.detail[:1024]),
                (ev.H_SOURCE_TOPIC, m.topic() or ""),
                (ev.H_SOURCE_PARTITION, str(d.kafka_partition)),
                (ev.H_SOURCE_OFFSET, str(d.kafka_offset)),
            ]
            self.dlq_producer.produce(
                self.kafka.dlq_topic, key=m.key(), value=m.value(), headers=headers, on_delivery=on_delivery
            )
        remaining = self.dlq_producer.flush(30)
        if remaining or failures:
            raise TransientError(f"DLQ produce failed ({remaining} unacked, errors: {failures[:3]})")

    def _commit(self, batch: Batch) -> None:
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

    def _observe(self, batch: Batch, r: BatchResult, write_s: float, commit_s: float) -> None:
        m = self.metrics
        m.consumed.inc(batch.consumed)
        m.stored.inc(r.stored)
        m.duplicates.inc(r.duplicates)
        m.redeliveries.inc(r.redeliveries)
        m.known_positions.inc(sum(batch.known.values()))
        m.conflicts.inc(r.conflicts)
        for d in batch.dead:
            m.dlq.labels(reason=d.reason).inc()
        m.batch_size.observe(batch.consumed)
        m.batch_seconds.observe(write_s)
        m.commit_seconds.observe(commit_s)

    # -- housekeeping ------------------------------------------------------------------------
    def _refresh_knobs(self, now: float) -> None:
        if now < self._next_config:
            return
        self._next_config = now + self.settings.config_poll_s
        stored: PipelineConfig | None = None
        try:
            row = config_store.latest_or_none(self._side_connection())
            stored = row.config if row else None
            version = row.version if row else None
        except psycopg.Error as e:
            log.debug("config store unreachable (%s); keeping the current knobs", e)
            self._close_side_connection()
            return
        new = Knobs.effective(self.settings.slowdown_ms, self.settings.batch_max, stored, version)
        slowdown, batch_max = new.slowdown_ms, new.batch_max
        if (slowdown, batch_max) != (self.knobs.slowdown_ms, self.knobs.batch_max):
            log.info("slowdown knob: %d ms per batch, batch max %d (config v%s)", slowdown, batch_max, version)
        self.knobs = new
        self.metrics.slowdown_ms.set(slowdown)

    def _side_connection(self) -> psycopg.Connection[Any]:
        """The main thread's own autocommit connection (knobs, ranges); the writers' are busy
        while a batch is in flight."""
        if self._config_conn is None or self._config_conn.closed:
            self._config_conn = psycopg.connect(self.db.dsn(), autocommit=True, connect_timeout=3)
        return self._config_conn

    def _close_side_connection(self) -> None:
        if self._config_conn is not None:
            self._config_conn.close()
        self._config_conn = None

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

    def _failpoint(self, point: str) -> None:
        """The chaos suite's crash points: SIGKILL ourselves here, in the Nth batch to reach it.

        `poll`: a batch was fetched, nothing of it written. `before_db_commit`: the batch's
        statements ran, its transaction is open. `after_db_commit`: the transaction committed,
        the offsets are not. Recovery must lose and duplicate nothing at each of them."""
        if self.settings.failpoint != point:
            return
        self._failpoint_hits += 1
        if self._failpoint_hits >= self.settings.failpoint_after_batches:
            log.warning("failpoint %s reached in batch %d: SIGKILL", point, self._failpoint_hits)
            os.kill(os.getpid(), signal.SIGKILL)

    @staticmethod
    def _sleep(seconds: float, stop: threading.Event | None) -> None:
        if stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)
