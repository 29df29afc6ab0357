"""Per-sensor `seq` that continues across restarts and is never reused.

Numbers are handed out from *reserved* blocks: before a sensor uses a seq beyond its
reservation, the store persists a new reservation (`next + block`) for every sensor of
the shard, with an atomic rename. A clean stop persists the exact next numbers, so a
restart continues without a gap; a crash (SIGKILL) skips at most one block per sensor,
but never reuses a number. Files of every shard layout are read at start and the maximum
wins, so changing `--workers` is safe too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson


class SeqStore:
    def __init__(self, folder: Path, shard: int, shards: int, block: int = 1000) -> None:
        self.folder = folder
        self.path = folder / f"seq-{shard}-of-{shards}.json"
        self.block = block
        self.next: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for f in self.folder.glob("seq-*.json"):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                for sid, n in orjson.loads(f.read_bytes()).items():
                    if isinstance(n, int) and n > self.next.get(sid, -1):
                        self.next[sid] = n
        self.reserved = dict(self.next)

    def take(self, sid: str) -> int:
        """The next seq of `sid`. A number is returned only once a persisted reservation covers it."""
        n = self.next.get(sid, 0)
        self.next[sid] = n + 1
        if n >= self.reserved.get(sid, 0):
            self._reserve()
        return n

    def ensure(self, sids: list[str]) -> None:
        """Register sensors up front, so one reservation covers the whole fleet."""
        missing = [s for s in sids if s not in self.next]
        for s in missing:
            self.next[s] = 0
        if missing:
            self._reserve()

    def _reserve(self) -> None:
        self.reserved = {sid: n + self.block for sid, n in self.next.items()}
        self._write(self.reserved)

    def _write(self, data: dict[str, int]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(data))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def close(self) -> None:
        """Persist the exact next numbers: a clean restart continues without a gap."""
        self._write(self.next)
