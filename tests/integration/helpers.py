"""Shared helpers for integration tests: real producers, real queries, bounded waits."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import uvicorn
from confluent_kafka import Consumer, Producer

from sensorpipe.api.app import ApiConfig, create_app
from sensorpipe.contracts.events import encode_event


@dataclass(frozen=True)
class Ev:
    sensor_id: str
    event_id: str
    ts_ms: int
    value: float
    seq: int

    def encode(self) -> bytes:
        return encode_event(self.sensor_id, self.event_id, self.ts_ms, self.value, self.seq)


def make_events(sensors: int, per_sensor: int, ts_ms: int | None = None) -> list[Ev]:
    """Events in per-sensor seq order, interleaved across sensors."""
    base = ts_ms if ts_ms is not None else int(time.time() * 1000)
    return [
        Ev(f"sensor-{s:05d}", str(uuid.uuid4()), base + i, float(s * 1000 + i), i)
        for i in range(per_sensor)
        for s in range(sensors)
    ]


def produce(
    bootstrap: str, topic: str, msgs: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]]
) -> int:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    n = 0
    for key, value, headers in msgs:
        p.produce(topic, key=key, value=value, headers=headers)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return n


def produce_events(bootstrap: str, topic: str, events: Iterable[Ev]) -> int:
    return produce(bootstrap, topic, ((e.sensor_id.encode(), e.encode(), None) for e in events))


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 60, commit: bool = False) -> list[Any]:
    """Read `expect` messages (or what arrives within `timeout`) as a new group; `commit`
    commits what was read, synchronously, before leaving."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=0.5):
            if m.error() is None:
                out.append(m)
    if commit and out:
        c.commit(asynchronous=False)
    c.close()
    return out


def scalar(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def read_side(dsn: str, query: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
    """Run one of the read side's async queries (storage.queries) on a fresh connection."""

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await query(conn)

    return asyncio.run(run())


def wait_until(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ApiServer:
    """The real API app on a free loopback port (uvicorn in a thread)."""

    def __init__(self, cfg: ApiConfig) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(cfg), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the API to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
