"""A dead letter's original message, read back from the dead-letter topic by its position.

Read-only (no group, nothing committed) and bounded: at most `max_bytes` of one message are
fetched, and a value larger than that is refused. `render` shows a value as escaped text
when it is UTF-8, and as a hex dump otherwise.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Original:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


class PayloadError(RuntimeError):
    """The message is not where the dead letter says (removed by retention) or too large."""


Client = dict[str, str | int | float | bool]


class Reader:
    """One read-only consumer kept open for reads by position, one at a time (it is shared by
    the API's threads, so reads take a lock): its connections and metadata outlive a read, so
    a read after the first is a fetch, not a connect. No group is joined and nothing is
    committed."""

    def __init__(self, client: Client, topic: str, max_bytes: int = MAX_BYTES) -> None:
        """`client`: the Kafka client settings (bootstrap servers, security protocol). The
        consumer is made on the first read: a process that never reads opens nothing."""
        self.topic, self.max_bytes = topic, max_bytes
        self._conf: Client = {
            **client,
            "group.id": f"sensorpipe-dlq-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # A read asks for a message known to be there (its position was checked first):
            # a broker's long poll would only hold the next read's fetch back for its wait.
            "fetch.wait.max.ms": 0,
            "fetch.max.bytes": max_bytes,
            "message.max.bytes": max_bytes,
            "max.partition.fetch.bytes": max_bytes,
            "log_level": 0,
        }
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None

    def read(self, partition: int, offset: int, timeout_s: float = 10.0) -> Original:
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._conf)
            self._check(self._consumer, partition, offset, timeout_s)
            self._consumer.assign([TopicPartition(self.topic, partition, offset)])
            try:
                return self._fetch(self._consumer, partition, offset, timeout_s)
            finally:
                self._consumer.unassign()

    def _check(self, c: Consumer, partition: int, offset: int, timeout_s: float) -> None:
        """Refuses a position the partition does not hold, before any fetch: one removed by the
        topic's retention, or one not written yet."""
        where = f"{self.topic}/{partition}@{offset}"
        try:
            marks = c.get_watermark_offsets(TopicPartition(self.topic, partition), timeout_s, cached=False)
        except KafkaException as e:
            raise PayloadError(f"could not read {where}: {e.args[0].str() if e.args else e}") from e
        if marks is None:
            raise PayloadError(f"could not read {where}: the broker did not answer within {timeout_s:g} s")
        low, high = marks
        if offset < low:
            raise PayloadError(f"no message at {where}: removed by the topic's retention (it starts at {low})")
        if offset >= high:
            raise PayloadError(f"no message at {where}: the partition ends at {high}")

    def _fetch(self, c: Consumer, partition: int, offset: int, timeout_s: float) -> Original:
        where = f"{self.topic}/{partition}@{offset}"
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            m = c.poll(min(0.5, left))
            if m is None:
                continue
            if (err := m.error()) is not None:
                raise PayloadError(f"could not read {where}: {err.str()}")
            if m.partition() != partition or m.offset() != offset:
                raise PayloadError(f"no message at {where}: the next one is at {m.offset()}")
            value = m.value()
            if value is not None and len(value) > self.max_bytes:
                raise PayloadError(f"the message at {where} is over {self.max_bytes} bytes")
            return Original(m.key(), value, _headers(m.headers()))
        raise PayloadError(f"no message at {where} within {timeout_s:g} s")

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def read(client: Client, topic: str, partition: int, offset: int, max_bytes: int = MAX_BYTES) -> Original:
    """One read by position with a consumer of its own (for the CLI's one-off reads)."""
    reader = Reader(client, topic, max_bytes)
    try:
        return reader.read(partition, offset)
    finally:
        reader.close()


def _headers(
    raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> list[tuple[str, bytes | None]]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def printable(data: bytes) -> str | None:
    """The bytes as escaped text if they are UTF-8, else None."""
    try:
        return data.decode("utf-8").encode("unicode_escape").decode("ascii")
    except UnicodeDecodeError:
        return None


def render(data: bytes | None, width: int = 16) -> str:
    """Escaped text for UTF-8, a hex dump (offset, hex, printable ASCII) for anything else."""
    if data is None:
        return "(null)"
    if (text := printable(data)) is not None:
        return text
    lines = []
    for i in range(0, len(data), width):
        chunk = data[i : i + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)
