"""The producer ledger: one line per delivery report, written in batches.

Format, one record per line: `KIND,ID,STATUS[,TIMESTAMP]`, where KIND is `e` (an event), `d`
(a deliberate duplicate of an event) or `p` (deliberate poison; ID is the expected DLQ
reason), STATUS is `acked`, `failed` or `unknown` (timed out in flight: it may or may not
have been written), and TIMESTAMP the event's own timestamp text (events and duplicates).
The audit reads it to prove nothing acknowledged was lost, and tells events that retention
dropped by their timestamps.
"""

from __future__ import annotations

import time
from pathlib import Path


class Ledger:
    """Buffered; written out every `flush_every` records or `flush_s` seconds, whichever
    comes first. A SIGKILLed producer loses at most that tail: events acked then show as
    stored-but-unrecorded (phantom) in the audit, never as lost."""

    def __init__(self, path: Path, flush_every: int = 20_000, flush_s: float = 1.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self._buf: list[str] = []
        self._flush_every = flush_every
        self._flush_s = flush_s
        self._next_flush = time.monotonic() + flush_s

    def record(self, kind: str, ident: str, status: str, ts: str = "") -> None:
        self._buf.append(f"{kind},{ident},{status},{ts}\n" if ts else f"{kind},{ident},{status}\n")
        if len(self._buf) >= self._flush_every or time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._f.write("".join(self._buf))
            self._buf.clear()
        self._f.flush()
        self._next_flush = time.monotonic() + self._flush_s

    def close(self) -> None:
        self.flush()
        self._f.close()
