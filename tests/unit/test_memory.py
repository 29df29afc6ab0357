"""runtime.memory: the trimmer's schedule and what it reports, with an injected trim and RSS; the heap
statistics, read from glibc and through the consumer's gauges."""

from __future__ import annotations

from prometheus_client import generate_latest

from sensorpipe.consumer.metrics import ConsumerMetrics
from sensorpipe.runtime.memory import HeapStats, Trimmer, libc_mallinfo, libc_trim, resident_bytes


def test_trims_at_most_once_per_interval_and_reports_what_was_released() -> None:
    rss = [300, 100, 250, 240]
    calls: list[int] = []
    t = Trimmer(30.0, lambda: calls.append(1), rss=lambda: rss.pop(0))
    assert t.maybe(0.0) == 200
    assert t.maybe(29.9) is None
    assert t.maybe(30.0) == 10
    assert len(calls) == 2


def test_growth_during_a_trim_is_not_reported_as_negative() -> None:
    rss = [100, 180]
    t = Trimmer(1.0, lambda: None, rss=lambda: rss.pop(0))
    assert t.maybe(0.0) == 0


def test_without_malloc_trim_nothing_runs() -> None:
    def never() -> int:
        raise AssertionError("RSS read without a trim")

    assert Trimmer(1.0, None, rss=never).maybe(5.0) is None


def test_the_real_trim_releases_freed_memory_on_glibc() -> None:
    trim = libc_trim()
    assert trim is not None  # the supported platform (Debian, glibc)
    # Many mid-sized blocks from the C allocator, then freed while one survivor at the end
    # keeps the heap from shrinking by itself: only a trim gives the pages back.
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = [libc.malloc(64 * 1024) for _ in range(1_000)]
    for b in blocks:
        libc.memset(b, 1, 64 * 1024)
    survivor = libc.malloc(64 * 1024)
    for b in blocks:
        libc.free(b)
    before = resident_bytes()
    trim()
    released = before - resident_bytes()
    libc.free(survivor)
    assert released > 32 * 1024 * 1024, released


def test_heap_statistics_see_a_large_allocation_and_its_release() -> None:
    read = libc_mallinfo()
    assert read is not None, "glibc 2.33+ has mallinfo2"
    before = read()
    block = bytearray(64 * 1024 * 1024)
    held = read()
    assert held.malloc_in_use - before.malloc_in_use >= 64 * 1024 * 1024
    assert held.malloc_mapped >= 64 * 1024 * 1024
    del block
    assert read().malloc_in_use < held.malloc_in_use - 32 * 1024 * 1024


def test_the_consumer_gauges_read_the_injected_heap_at_scrape() -> None:
    stats = [HeapStats(malloc_in_use=10, malloc_free=20, malloc_mapped=4, python_blocks=7)]
    m = ConsumerMetrics()
    m.watch_heap(lambda: stats[0])
    assert m.registry.get_sample_value("sensorpipe_consumer_heap_bytes", {"state": "free"}) == 20
    stats[0] = HeapStats(malloc_in_use=11, malloc_free=5, malloc_mapped=4, python_blocks=9)
    assert m.registry.get_sample_value("sensorpipe_consumer_heap_bytes", {"state": "in_use"}) == 11
    assert m.registry.get_sample_value("sensorpipe_consumer_heap_bytes", {"state": "free"}) == 5
    assert m.registry.get_sample_value("sensorpipe_consumer_python_blocks") == 9


def test_one_scrape_reads_the_heap_once() -> None:
    reads = []

    def read() -> HeapStats:
        reads.append(1)
        return HeapStats(malloc_in_use=1, malloc_free=2, malloc_mapped=0, python_blocks=3)

    m = ConsumerMetrics()
    m.watch_heap(read)
    text = generate_latest(m.registry).decode()
    assert 'sensorpipe_consumer_heap_bytes{state="free"} 2.0' in text and len(reads) == 1
