"""Give memory that the C allocator holds free back to the operating system.

glibc's malloc keeps freed memory inside its arenas for reuse and returns to the system only
what lies at the top of each heap. A process that once held a large working set (a consumer
draining a backlog: librdkafka's fetch buffers on its own threads, decoded batches) keeps
that resident after the work is done, though nothing uses it: its RSS steps up and stays.
`malloc_trim(0)` releases every free page of every arena (with MADV_DONTNEED), so a process
that calls it now and then is back near its working set after a burst.

On a C library without `malloc_trim` (musl, macOS) trimming is a no-op.

`heap_stats()` says where the memory lies, for /metrics and the soak's profile: what malloc
hands out and holds free (glibc's `mallinfo2`, every arena), and how many blocks Python's
own object allocator has out (its arenas are mapped outside malloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def _libc_function(symbol: str) -> Any | None:
    """The C library's function `symbol`, or None where there is no such library or function."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):
        return None


def libc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` as a callable, or None where the C library has none."""
    fn = _libc_function("malloc_trim")
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later): every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class HeapStats:
    """malloc's bytes in use (small and mapped chunks), held free inside its arenas (resident
    or not: a trim gives the pages back but they stay counted), and mapped as large chunks;
    and Python's allocated object blocks (a count; their arenas are not malloc's)."""

    malloc_in_use: int
    malloc_free: int
    malloc_mapped: int
    python_blocks: int


def libc_mallinfo() -> Callable[[], HeapStats] | None:
    """A reader of this process's heap statistics, or None where the C library has no
    `mallinfo2` (glibc before 2.33, musl, macOS)."""
    fn = _libc_function("mallinfo2")
    if fn is None:
        return None
    fn.argtypes = []
    fn.restype = _MallInfo2

    def read() -> HeapStats:
        m = fn()
        return HeapStats(m.uordblks + m.hblkhd, m.fordblks, m.hblkhd, sys.getallocatedblocks())

    return read


def resident_bytes() -> int:
    """This process's resident set, from /proc/self/statm (0 where there is none)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Trimmer:
    """Trims at most once every `every_s` seconds; `maybe(now)` returns the bytes the trim
    released (RSS before less after, never negative), or None when it did not run."""

    def __init__(
        self,
        every_s: float,
        trim: Callable[[], object] | None,
        rss: Callable[[], int] = resident_bytes,
    ) -> None:
        self.every_s = every_s
        self._trim = trim
        self._rss = rss
        self._next = 0.0

    def maybe(self, now: float) -> int | None:
        if self._trim is None or now < self._next:
            return None
        self._next = now + self.every_s
        before = self._rss()
        self._trim()
        return max(0, before - self._rss())
