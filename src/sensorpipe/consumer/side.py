"""The consumer's side connection: the main thread's own autocommit connection for reads and
housekeeping (knobs, processed ranges, size retention, the raw horizon), since the writers'
connections are busy while a batch is in flight.

None of that work may stop the batch loop: the block of `with side.reading(what) as conn:`
gets the connection from `conn()` (connecting if need be); on a database error, connecting
included, the rest of the block is skipped, `what` is logged with the error, the connection
is dropped (the next use reconnects), and the code after the block runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

log = logging.getLogger("sensorpipe.consumer")


class SideConnection:
    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None

    @contextmanager
    def reading(self, what: str, level: int = logging.INFO) -> Iterator[Callable[[], psycopg.Connection[Any]]]:
        try:
            yield self._connection
        except psycopg.Error as e:
            log.log(level, "%s (%s)", what, e)
            self.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
